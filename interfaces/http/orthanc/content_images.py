"""Orthanc REST API: decoded images of an instance (Orthanc 1.10).

``/instances/{id}/preview``, ``/rendered``, ``/image-uint8``, ``/image-uint16``, ``/image-int16``,
``/matlab``, ``/numpy`` (``?rescale``, ``?compress``) and the same under ``/frames/{n}/``. The
format follows the ``Accept`` header (``image/png`` by default, ``image/jpeg`` with
``?quality=1..100``, ``image/x-portable-arbitrarymap``); ``/rendered`` takes ``window-center``,
``window-width``, ``width``, ``height`` and ``smooth``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from hub.errors import HubError
from hub.services.content import ContentService, RenderOptions
from mappings.ascii import is_digits

ROUTES = {"preview": "preview", "rendered": "rendered", "image-uint8": "uint8", "image-uint16": "uint16",
          "image-int16": "int16"}
ACCEPTED = {"image/png": "png", "image/jpeg": "jpeg", "image/x-portable-arbitrarymap": "pam"}


def negotiate(header: str | None) -> str:
    """The encoding the ``Accept`` header prefers (highest q; PNG for wildcards or no header);
    404 when it accepts none of PNG, JPEG and PAM, as Orthanc's content negotiation."""
    if not header or not header.strip():
        return "png"
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        fields = [f.strip() for f in part.split(";")]
        mime, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if mime in ACCEPTED:
            choices.append((q, position, ACCEPTED[mime]))
        elif mime in ("*/*", "image/*", "*"):
            choices.append((q, position, "png"))
    if not choices:
        raise HubError("unknown_resource", "None of the accepted formats can be produced (PNG, JPEG, PAM)")
    choices.sort(key=lambda c: (-c[0], c[1]))
    return choices[0][2]


def _quality() -> int:
    raw = request.args.get("quality", "90")
    if not is_digits(raw.strip()) or not 1 <= int(raw) <= 100:
        raise HubError("bad_request", f"Bad quality for a JPEG encoding (must be a number between 0 and 100): {raw}")
    return int(raw)


def _number(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise HubError("bad_request", f"Bad value for argument: {name}") from None


def _size(name: str) -> int:
    raw = request.args.get(name)
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise HubError("bad_request", f"Bad value for argument: {name}") from None
    if value < 0:
        raise HubError("bad_request", f"Argument cannot be negative: {name}")
    return value


def _boolean(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", ""):
        return True
    if value in ("false", "0"):
        return False
    raise HubError("bad_request", f"Bad value for a Boolean argument: {name}={raw}")


def _flag(name: str, default: bool) -> bool:
    return _boolean(name) if name in request.args else default


def render_options() -> RenderOptions:
    return RenderOptions(window_center=_number("window-center"), window_width=_number("window-width"),
                         width=_size("width"), height=_size("height"), smooth=_boolean("smooth"))


def register(bp: Blueprint, service: Callable[[], ContentService], frame_index: Callable[[str], int]) -> None:
    """Add the image routes to the content blueprint."""

    def answer(id: str, frame: int, route: str) -> Response:  # noqa: A002
        service().locate(id)  # an unknown id is 404 before any argument is checked
        quality = _quality()
        encoding = negotiate(request.headers.get("Accept"))
        options = render_options() if route == "rendered" else None
        data, mime = service().image(id, frame, ROUTES[route], encoding, quality=quality,  # type: ignore[arg-type]
                                     options=options)
        return Response(data, mimetype=mime)

    def numpy_view(id: str, frame: str | None = None) -> Response:  # noqa: A002
        index = frame_index(frame) if frame is not None else None
        data = service().numpy(id, index, rescale=_flag("rescale", True), compress=_flag("compress", False))
        return Response(data, mimetype="application/octet-stream")

    def matlab_view(id: str, frame: str = "0") -> Response:  # noqa: A002
        return Response(service().matlab(id, frame_index(frame)), mimetype="text/plain")

    bp.add_url_rule("/instances/<id>/numpy", "instance_numpy", numpy_view, methods=["GET"])
    bp.add_url_rule("/instances/<id>/frames/<frame>/numpy", "frame_numpy", numpy_view, methods=["GET"])
    bp.add_url_rule("/instances/<id>/matlab", "instance_matlab", matlab_view, methods=["GET"])
    bp.add_url_rule("/instances/<id>/frames/<frame>/matlab", "frame_matlab", matlab_view, methods=["GET"])

    for route in ROUTES:
        def instance_view(id: str, route: str = route) -> Any:  # noqa: A002
            return answer(id, 0, route)

        def frame_view(id: str, frame: str, route: str = route) -> Any:  # noqa: A002
            return answer(id, frame_index(frame), route)

        bp.add_url_rule(f"/instances/<id>/{route}", f"instance_{route}", instance_view, methods=["GET"])
        bp.add_url_rule(f"/instances/<id>/frames/<frame>/{route}", f"frame_{route}", frame_view, methods=["GET"])
