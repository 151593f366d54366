"""The reporting module's render endpoints (``/render``): volume info, MPR and MIP images of a series.

Query parameters are validated here and turned into a :class:`hub.services.render.RenderRequest`; the
service renders. Every image carries an ETag over (series, its last change, the normalised request), so a
repeated request is answered 304 without rendering."""

from __future__ import annotations

import math

from flask import Blueprint, Response, jsonify, request
from werkzeug.datastructures import MultiDict

from hub.errors import HubError
from hub.services.render import FORMATS, MODES, PRESETS, VIEWS, NotAVolumeError, RenderRequest
from interfaces.http.context import hub
from interfaces.http.errors import error_response

bp = Blueprint("render", __name__, url_prefix="/render")
MEDIA = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
KNOWN = {"mpr": {"plane", "position", "point", "normal", "angles", "up", "thickness", "mode", "window", "preset",
                 "width", "height", "quality", "format", "q"},
         "mip": {"azimuth", "elevation", "mode", "window", "preset", "width", "height", "quality", "format", "q"}}


@bp.errorhandler(NotAVolumeError)
def _not_a_volume(exc: NotAVolumeError) -> Response:
    """422 with the reason as a code a client can act on (PS3.3 C.7.6.2.1.1 geometry problems)."""
    resp = error_response(exc.http_status, exc.message)
    body = resp.get_json()
    body["Reason"] = exc.reason
    resp.set_data(jsonify(body).get_data())
    return resp


@bp.get("/series/<ref>/info")
def info(ref: str) -> Response:
    """Dimensions, spacing (mm), orientation, value range, DICOM window presets and load progress."""
    return jsonify(hub().render.info(ref))


@bp.get("/series/<ref>/mpr")
def mpr(ref: str) -> Response:
    return _image(ref, parse("mpr", request.args))


@bp.get("/series/<ref>/mip")
def mip(ref: str) -> Response:
    return _image(ref, parse("mip", request.args))


def _image(ref: str, req: RenderRequest) -> Response:
    rendered = hub().render.image(ref, req, unless=request.if_none_match)
    if rendered.data is None:
        resp = Response(status=304)
    else:
        resp = Response(rendered.data, mimetype=MEDIA[req.format])
        assert rendered.view is not None
        edges = rendered.view.labels
        resp.headers["X-Orientation"] = f"left={edges.left};right={edges.right};top={edges.top};bottom={edges.bottom}"
        resp.headers["X-Pixel-Spacing"] = f"{rendered.view.pixel_mm:.6g}"
    resp.headers["Vary"] = "Accept"
    if not rendered.final:  # the window comes from a volume still loading: a later image may differ
        resp.headers["Cache-Control"] = "no-store"
        return resp
    resp.set_etag(rendered.etag)
    resp.headers["Cache-Control"] = "private, no-cache"  # revalidate: the series may change, the ETag says
    return resp


# --------------------------------------------------------------------------- parameters


def _bad(message: str) -> HubError:
    return HubError("bad_request", message)


def _number(args: MultiDict[str, str], name: str, default: float | None = None, *, low: float = -math.inf,
            high: float = math.inf) -> float | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(f"'{name}' must be a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}")
    return value


def _vector(args: MultiDict[str, str], name: str, size: int = 3) -> tuple[float, ...] | None:
    raw = args.get(name)
    if raw is None:
        return None
    try:
        values = tuple(float(p) for p in raw.split(","))
    except ValueError:
        raise _bad(f"'{name}' is {size} comma-separated numbers") from None
    if len(values) != size or not all(math.isfinite(v) for v in values):
        raise _bad(f"'{name}' is {size} comma-separated numbers")
    return values


def _choice(args: MultiDict[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = args.get(name, default).strip().lower()
    if value not in allowed:
        raise _bad(f"'{name}' is one of {', '.join(allowed)}")
    return value


def _format(args: MultiDict[str, str]) -> str:
    if "format" in args:
        return _choice(args, "format", FORMATS, "jpeg")
    accept = request.accept_mimetypes
    if not accept or accept.provided is False:
        return "jpeg"
    best = accept.best_match(list(MEDIA.values()))
    if best is None:
        raise HubError("not_acceptable", "rendered images are image/jpeg, image/png or image/webp")
    return next(k for k, v in MEDIA.items() if v == best)


def parse(kind: str, args: MultiDict[str, str]) -> RenderRequest:
    """Validate the query of ``/mpr`` or ``/mip``; unknown parameters are refused (a typo must not
    silently give another image)."""
    unknown = sorted(set(args) - KNOWN[kind])
    if unknown:
        raise _bad(f"unknown parameter(s): {', '.join(unknown)}; {kind} takes {', '.join(sorted(KNOWN[kind]))}")
    window = _vector(args, "window", 2)
    if window is not None and window[1] <= 0:
        raise _bad("'window' is center,width with a positive width")
    preset = args.get("preset")
    if preset is not None:
        preset = preset.strip().lower()
        if preset not in PRESETS and not (preset == "dicom" or (preset[:6] == "dicom:" and preset[6:].isascii()
                                                                 and preset[6:].isdecimal())):
            raise _bad(f"'preset' is one of {', '.join(PRESETS)}, dicom or dicom:N")
    if window is not None and preset is not None:
        raise _bad("give 'window' or 'preset', not both")
    width, height = _number(args, "width", low=1, high=8192), _number(args, "height", low=1, high=8192)
    common = dict(
        mode=_choice(args, "mode", MODES, "mip"), window=window, preset=preset,
        width=int(width) if width else None, height=int(height) if height else None,
        fast=_choice(args, "quality", ("best", "fast"), "best") == "fast", format=_format(args),
        q=int(_number(args, "q", 90, low=1, high=100) or 90),
    )
    if kind == "mip":
        return RenderRequest(view="mip", azimuth=_number(args, "azimuth", 0.0, low=-360, high=360) or 0.0,
                             elevation=_number(args, "elevation", 0.0, low=-90, high=90) or 0.0, **common)
    view = _choice(args, "plane", VIEWS, "axial")
    point, normal, angles, up = (_vector(args, n) for n in ("point", "normal", "angles", "up"))
    if view == "oblique":
        if normal is None and angles is None:
            raise _bad("an oblique plane needs 'normal' (with an optional 'point') or 'angles'")
        if normal is not None and angles is not None:
            raise _bad("give 'normal' or 'angles', not both")
        if normal is not None and math.hypot(*normal) < 1e-6:
            raise _bad("'normal' must not be the zero vector")
    elif normal is not None or angles is not None:
        raise _bad(f"'normal' and 'angles' are for plane=oblique, not {view}")
    return RenderRequest(view=view, position=_number(args, "position"), point=point, normal=normal, angles=angles,
                         up=up, thickness=_number(args, "thickness", 0.0, low=0, high=2000) or 0.0, **common)
