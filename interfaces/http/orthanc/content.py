"""Orthanc REST API: the content of one instance (Orthanc 1.10 routes and answers).

``/instances/{id}/file`` (the stored Part 10 file, streamed), ``/tags`` (``?simplify``, ``?short``,
``?ignore-length``), ``/simplified-tags``, ``/header``, ``/content/{path}``, ``/frames``,
``/frames/{n}`` (the operations), ``/frames/{n}/raw`` and ``raw.gz``, ``/pdf``; the image routes
are in :mod:`interfaces.http.orthanc.content_images`.
"""

from __future__ import annotations

import gzip

from flask import Blueprint, Response, current_app, jsonify, request, send_file

from hub.app import Hub
from hub.errors import HubError
from hub.services.content import ContentService
from interfaces.http.orthanc import content_images
from mappings.ascii import is_digits

bp = Blueprint("orthanc_content", __name__)

FRAME_OPERATIONS = ["image-int16", "image-uint16", "image-uint8", "matlab", "numpy", "preview", "raw", "raw.gz",
                    "rendered"]


def service() -> ContentService:
    hub: Hub = current_app.extensions["rishub"]
    return hub.content


def frame_index(text: str) -> int:
    """A frame number as Orthanc reads it (an unsigned integer); anything else is an unknown route."""
    stripped = text.strip()
    if stripped.startswith("-") and is_digits(stripped[1:]):
        return -1  # Orthanc wraps negative numbers to huge ones: out of range
    if not is_digits(stripped):
        raise HubError("unknown_resource", f"Unknown frame: {text!r}")
    return int(stripped)


def tag_format() -> str:
    """``?simplify`` wins over ``?short``; their values do not matter (Orthanc 1.10)."""
    if "simplify" in request.args:
        return "simplify"
    if "short" in request.args:
        return "short"
    return "full"


@bp.get("/instances/<id>/file")
def instance_file(id: str) -> Response:  # noqa: A002 - Orthanc's {id}
    """The stored file, byte for byte, as ``application/dicom`` with Orthanc's Content-Disposition."""
    stored = service().locate(id)
    resp = send_file(stored.path, mimetype="application/dicom", conditional=False, etag=False,
                     last_modified=None, max_age=None)
    resp.headers["Content-Disposition"] = f'filename="{stored.filename}"'
    return resp


@bp.get("/instances/<id>/tags")
def instance_tags(id: str) -> Response:  # noqa: A002
    ignore = [t for t in request.args.get("ignore-length", "").split(",") if t.strip()]
    return jsonify(service().tags(id, tag_format(), ignore))  # type: ignore[arg-type]


@bp.get("/instances/<id>/simplified-tags")
def instance_simplified_tags(id: str) -> Response:  # noqa: A002
    return jsonify(service().tags(id, "simplify"))


@bp.get("/instances/<id>/header")
def instance_header(id: str) -> Response:  # noqa: A002
    return jsonify(service().header(id, tag_format()))  # type: ignore[arg-type]


@bp.get("/instances/<id>/content")
@bp.get("/instances/<id>/content/")
@bp.get("/instances/<id>/content/<path:path>")
def instance_content(id: str, path: str = "") -> Response:  # noqa: A002
    """Navigate the data set: a list of ``gggg-eeee`` tags, of item or fragment indexes, or the raw
    value as ``application/octet-stream``."""
    answer = service().content(id, [p for p in path.split("/") if p])
    if answer.listing is not None:
        return jsonify(answer.listing)
    resp = Response(answer.chunks, mimetype="application/octet-stream")
    resp.content_length = answer.length
    return resp


@bp.get("/instances/<id>/frames")
def instance_frames(id: str) -> Response:  # noqa: A002
    return jsonify(list(range(service().frame_count(id))))


@bp.get("/instances/<id>/frames/<frame>")
@bp.get("/instances/<id>/frames/<frame>/")
def instance_frame_operations(id: str, frame: str) -> Response:  # noqa: A002
    service().locate(id)
    return jsonify(FRAME_OPERATIONS)


@bp.get("/instances/<id>/frames/<frame>/raw")
def instance_raw_frame(id: str, frame: str) -> Response:  # noqa: A002
    """The frame as stored: a slice of native pixel data, or the fragment(s) of a compressed frame
    (``image/jpeg`` for baseline JPEG, ``image/jp2`` for JPEG 2000, else octet-stream)."""
    data, mime = service().raw_frame(id, frame_index(frame))
    return Response(data, mimetype=mime)


@bp.get("/instances/<id>/frames/<frame>/raw.gz")
def instance_raw_frame_gz(id: str, frame: str) -> Response:  # noqa: A002
    data, _ = service().raw_frame(id, frame_index(frame))
    return Response(gzip.compress(data, compresslevel=6), mimetype="application/gzip")


@bp.get("/instances/<id>/pdf")
def instance_pdf(id: str) -> Response:  # noqa: A002
    """The PDF of an Encapsulated PDF instance; 404 otherwise."""
    return Response(service().pdf(id), mimetype="application/pdf")


content_images.register(bp, service, frame_index)
