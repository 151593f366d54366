"""Orthanc ZIP archives and DICOMDIR media (Orthanc 1.10 ``OrthancRestArchive.cpp``), streamed.

* ``GET|POST /{patients|studies|series}/{id}/archive``, ``.../media`` (``?extended`` / ``Extended``):
  the resource named by ``id`` (Orthanc looks the id up at any level), file ``{id}.zip``;
* ``POST /tools/create-archive``, ``/tools/create-media``, ``/tools/create-media-extended``: the
  resources of a JSON list or of ``{"Resources": [...]}``, file ``Archive.zip``.

POST bodies take Orthanc's job options, checked as Orthanc does: ``Synchronous`` / ``Asynchronous``
(booleans), ``Priority`` (integer), ``Extended`` (boolean), ``Transcode``. Only the synchronous
(default) mode is served here, and files are sent as stored (no ``Transcode``). Creating an archive
only reads, so the POST flavours need the ``user`` role like the GET ones.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from hub.app import Hub
from hub.errors import HubError
from interfaces.http.auth import requires
from interfaces.http.context import hub as _hub
from interfaces.http.orthanc.upload import BAD_FILE_FORMAT, orthanc_error

bp = Blueprint("orthanc_archive", __name__)

LEVELS = "<any(patients, studies, series):level>"
PARAMETER_OUT_OF_RANGE = (3, "Parameter out of range")


class _BadRequest(Exception):
    """A body Orthanc refuses, answered with Orthanc's own error code and details."""

    def __init__(self, details: str | None, code: tuple[int, str] = BAD_FILE_FORMAT) -> None:
        super().__init__(details)
        self.details = details
        self.code = code


@bp.errorhandler(_BadRequest)
def _bad_request(exc: _BadRequest) -> Response:
    return orthanc_error(400, exc.code, exc.details)




def _body(details: str | None) -> Any:
    """The JSON body (Orthanc ``ParseJsonRequest``); ``details`` for the error when it is not JSON."""
    try:
        return json.loads(request.get_data(cache=False) or b"")
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest(details) from None


def _field(body: Any, key: str, kind: type, name: str) -> Any:
    if not isinstance(body, dict) or key not in body:
        return None
    value = body[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadRequest(f"{name} value expected in field: {key}")
    return value


def _options(body: Any, default_extended: bool) -> tuple[bool, bool]:
    """Check Orthanc's job options (``GetJobParameters``); returns (``Extended``, synchronous)."""
    synchronous = _field(body, "Synchronous", bool, "Boolean")
    if synchronous is None:
        asynchronous = _field(body, "Asynchronous", bool, "Boolean")
        synchronous = not asynchronous if asynchronous is not None else True
    _field(body, "Priority", int, "Integer")
    extended = _field(body, "Extended", bool, "Boolean")
    transcode = _field(body, "Transcode", str, "String")
    if transcode is not None:
        raise HubError("bad_request", "Transcode is not supported: archives hold the files as stored")
    return (default_extended if extended is None else extended), synchronous


def _resources(body: Any) -> list[str]:
    """Orthanc ``AddResourcesOfInterest``: a list of ids, or ``{"Resources": [...]}``."""
    if isinstance(body, dict):
        if "Resources" not in body:
            raise _BadRequest("Missing field Resources in the JSON body")
        body = body["Resources"]
    elif not isinstance(body, list):
        raise _BadRequest(None)
    if not isinstance(body, list) or not all(isinstance(r, str) for r in body):
        raise _BadRequest("Expected a list of strings (Orthanc identifiers)")
    return body


def _zip(ids: Sequence[str], filename: str, *, media: bool, extended: bool = False, synchronous: bool = True,
         body: Any = None) -> Response:
    """Plan first (unknown ids are a 404 before anything is sent), then stream the ZIP; or, for an
    ``Asynchronous`` body, a job that writes it to a file served at ``/jobs/{id}/archive``."""
    hub = _hub()
    service = hub.archive
    plan = service.plan(ids, media=media)
    if not synchronous:
        return jsonify(hub.jobs.submit_request(body, "Media" if media else "Archive",
                                               _archive_job(hub, plan, media, extended, filename),
                                               content={"Description": "REST API"}))
    chunks = service.stream_media(plan, extended=extended) if media else service.stream_archive(plan)
    return Response(chunks, mimetype="application/zip", direct_passthrough=True,
                    headers={"Content-Disposition": f'filename="{filename}"'})


def _archive_job(hub: Hub, plan: Any, media: bool, extended: bool, filename: str) -> Any:
    """The job of an asynchronous archive (Orthanc ``ArchiveJob``): the ZIP goes to a file under the
    data directory, then becomes the job's ``archive`` output; progress follows the bytes written."""
    tmp = hub.settings.data_path / "tmp"

    def run(ctx: Any) -> dict[str, Any]:
        tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="archive-", suffix=".zip", dir=tmp)
        total = max(1, plan.uncompressed_size)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                chunks = (hub.archive.stream_media(plan, extended=extended) if media
                          else hub.archive.stream_archive(plan))
                for chunk in chunks:
                    ctx.check()
                    out.write(chunk)
                    written += len(chunk)
                    ctx.progress(min(written, total), total)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        ctx.set_output("archive", Path(name), "application/zip", filename)
        mb = 1024 * 1024
        return {"ArchiveSize": str(written), "ArchiveSizeMB": written // mb,
                "InstancesCount": len(plan.entries), "UncompressedSize": str(total),
                "UncompressedSizeMB": total // mb}

    return run


@bp.get(f"/{LEVELS}/<rid>/archive")
def get_archive(level: str, rid: str) -> Response:
    return _zip([rid], f"{rid}.zip", media=False)


@bp.post(f"/{LEVELS}/<rid>/archive")
@requires("user")
def post_archive(level: str, rid: str) -> Response:
    body = _body(None)
    _, synchronous = _options(body, False)
    return _zip([rid], f"{rid}.zip", media=False, synchronous=synchronous, body=body)


@bp.get(f"/{LEVELS}/<rid>/media")
def get_media(level: str, rid: str) -> Response:
    return _zip([rid], f"{rid}.zip", media=True, extended="extended" in request.args)


@bp.post(f"/{LEVELS}/<rid>/media")
@requires("user")
def post_media(level: str, rid: str) -> Response:
    body = _body(None)
    extended, synchronous = _options(body, False)
    return _zip([rid], f"{rid}.zip", media=True, extended=extended, synchronous=synchronous, body=body)


def _batch(media: bool, default_extended: bool) -> Response:
    body = _body("Expected a list of resources to archive in the body")
    extended, synchronous = _options(body, default_extended)
    return _zip(_resources(body), "Archive.zip", media=media, extended=extended, synchronous=synchronous,
                body=body)


@bp.post("/tools/create-archive")
@requires("user")
def create_archive() -> Response:
    return _batch(False, False)


@bp.post("/tools/create-media")
@requires("user")
def create_media() -> Response:
    return _batch(True, False)


@bp.post("/tools/create-media-extended")
@requires("user")
def create_media_extended() -> Response:
    return _batch(True, True)
