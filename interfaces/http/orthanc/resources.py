"""Orthanc REST API: ``/patients``, ``/studies``, ``/series``, ``/instances`` (Orthanc 1.10).

Lists (``expand``, ``since`` + ``limit``), one resource, its children (always expanded, as 1.10
does) and ancestors, ``shared-tags`` (``?simplify``, ``?short``), ``statistics``, ``metadata``
and ``DELETE``. Every rule is registered explicitly, so other blueprints' routes under the same
prefixes (``/instances/{id}/file``, ``/studies/{id}/archive``, ...) are not shadowed.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from hub.domain.archive import Level
from hub.errors import HubError
from hub.services.resources import PATHS
from interfaces.http.context import hub as _hub

bp = Blueprint("orthanc_resources", __name__)

LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE)
CHILD_PATHS = {"studies": Level.STUDY, "series": Level.SERIES, "instances": Level.INSTANCE}
PARENT_PATHS = {"patient": Level.PATIENT, "study": Level.STUDY, "series": Level.SERIES}
MAX_COUNT = 2**62  # larger since/limit values mean "all" (SQL integers are 64-bit)




def _int_arg(name: str) -> int:
    raw = request.args.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        raise HubError("bad_request", f'Bad type for the "{name}" argument: {raw!r} is not an integer') from None
    if value < 0:
        raise HubError("bad_request", f'The "{name}" argument must not be negative')
    if value >= 2**64:
        raise HubError("bad_request", f'The "{name}" argument is too large')  # Orthanc: a size_t
    return min(value, MAX_COUNT)


def list_resources(level: Level) -> Response:
    """``GET /{level}``: Orthanc needs ``since`` and ``limit`` together (Orthanc ``ListResources``)."""
    since, limit = 0, None
    if "since" in request.args or "limit" in request.args:
        for name in ("limit", "since"):
            if name not in request.args:
                raise HubError("bad_request", f'Missing "{name}" argument for GET request against: {request.path}')
        since, limit = _int_arg("since"), _int_arg("limit")
    return jsonify(_hub().resources.list(level, since=since, limit=limit, expand="expand" in request.args))


def get_resource(level: Level, id: str) -> Response:  # noqa: A002 - Orthanc's {id}
    return jsonify(_hub().resources.get(level, id))


def delete_resource(level: Level, id: str) -> Response:  # noqa: A002
    return jsonify(_hub().resources.delete(level, id))


def statistics(level: Level, id: str) -> Response:  # noqa: A002
    return jsonify(_hub().resources.statistics(level, id))


def shared_tags(level: Level, id: str) -> Response:  # noqa: A002
    form = "simplify" if "simplify" in request.args else "short" if "short" in request.args else "full"
    return jsonify(_hub().resources.shared_tags(level, id, form))


def metadata(level: Level, id: str) -> Response:  # noqa: A002
    """``/{level}/{id}/metadata``: names in Orthanc's order, or with ``?expand`` a name -> value object."""
    values = _hub().resources.metadata(level, id)
    if "expand" in request.args:
        return jsonify({k: values[k] for k in sorted(values)})
    return jsonify(list(values))


def metadata_value(level: Level, id: str, name: str) -> Response:  # noqa: A002
    values = _hub().resources.metadata(level, id)
    if name not in values:
        raise HubError("unknown_resource", f"No metadata {name!r} on this resource")
    return Response(values[name], mimetype="text/plain")


def children(level: Level, target: Level, id: str) -> Response:  # noqa: A002
    return jsonify(_hub().resources.children(level, id, target))


def parent(level: Level, target: Level, id: str) -> Response:  # noqa: A002
    return jsonify(_hub().resources.parent(level, id, target))


def protected(id: str) -> Response:  # noqa: A002
    """``GET /patients/{id}/protected``: the hub has no patient recycling, so nothing is protected."""
    _hub().resources.get(Level.PATIENT, id)  # 404 when unknown
    return Response("0", mimetype="text/plain")


def _route(rule: str, endpoint: str, view: Callable[..., Response], methods: tuple[str, ...] = ("GET",)) -> None:
    bp.add_url_rule(rule, endpoint, view, methods=list(methods))


def _register() -> None:
    order = list(LEVELS)
    for level in LEVELS:
        path, depth = PATHS[level], order.index(level)
        _route(f"/{path}", f"list_{path}", lambda level=level: list_resources(level))
        _route(f"/{path}/<id>", f"get_{path}", lambda id, level=level: get_resource(level, id))  # noqa: A002
        _route(f"/{path}/<id>", f"delete_{path}", lambda id, level=level: delete_resource(level, id),  # noqa: A002
               ("DELETE",))
        _route(f"/{path}/<id>/statistics", f"statistics_{path}",
               lambda id, level=level: statistics(level, id))  # noqa: A002
        _route(f"/{path}/<id>/metadata", f"metadata_{path}", lambda id, level=level: metadata(level, id))  # noqa: A002
        _route(f"/{path}/<id>/metadata/<name>", f"metadata_value_{path}",
               lambda id, name, level=level: metadata_value(level, id, name))  # noqa: A002
        if level is not Level.INSTANCE:
            _route(f"/{path}/<id>/shared-tags", f"shared_tags_{path}",
                   lambda id, level=level: shared_tags(level, id))  # noqa: A002
        for sub, target in CHILD_PATHS.items():
            if order.index(target) > depth:
                _route(f"/{path}/<id>/{sub}", f"children_{path}_{sub}",
                       lambda id, level=level, target=target: children(level, target, id))  # noqa: A002
        for sub, target in PARENT_PATHS.items():
            if order.index(target) < depth:
                _route(f"/{path}/<id>/{sub}", f"parent_{path}_{sub}",
                       lambda id, level=level, target=target: parent(level, target, id))  # noqa: A002
    _route("/patients/<id>/protected", "patient_protected", protected)


_register()
