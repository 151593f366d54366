"""Orthanc ``POST /instances`` (Orthanc 1.10 ``UploadDicomFile``): one DICOM Part 10 file, or a ZIP of
many (new in Orthanc 1.8.2), each through the single ingest path.

The body is streamed to a temporary file in the blob store's staging area (never held in memory);
a single file is then handed to ingest as a file it may consume (linked, not copied), ZIP members are
read from that file one by one. Answers as Orthanc: ``{ID, ParentPatient, ParentSeries,
ParentStudy, Path, Status}`` (``Success`` or ``AlreadyStored``), a list of those for a ZIP, in which
members that are not DICOM, or lack an identifying UID (a DICOMDIR), are skipped; any other error
stops the upload, and what was stored before it stays stored. An empty body, a non-DICOM body or an
unreadable ZIP is a 400 with Orthanc's "Bad file format" error; a file lacking an identifying UID is
Orthanc's 404 "Inexistent tag". ``Content-Encoding: gzip`` is accepted for a single file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from hub.app import Hub
from hub.domain.archive import StoreOutcome, StoreResult
from hub.domain.origin import Origin
from hub.errors import HubError
from interfaces.http import errors
from interfaces.http.auth import current_principal, requires
from interfaces.http.context import hub as _hub

log = logging.getLogger(__name__)

bp = Blueprint("orthanc_upload", __name__)

CHUNK = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty ZIP
SKIPPED_IN_ZIP = {"bad_file_format": "not DICOM", "missing_attribute": "probably a DICOMDIR"}
# Orthanc ErrorCode values (OrthancFramework Enumerations.h) of the errors this route answers itself.
BAD_FILE_FORMAT = (15, "Bad file format")
INEXISTENT_TAG = (21, "Inexistent tag")




def orthanc_error(status: int, code: tuple[int, str], details: str | None = None) -> Response:
    """Orthanc's error body for a specific Orthanc error code (``Details`` when Orthanc gives one)."""
    resp = errors.error_response(status, code[1])
    body: dict[str, Any] = resp.get_json()
    if details is not None:
        body = {"Details": details, **body}
    body["OrthancError"], body["OrthancStatus"] = code[1], code[0]
    out = jsonify(body)
    out.status_code = status
    return out


def _answer(result: StoreResult) -> dict[str, str]:
    """Orthanc ``SetupResourceAnswer`` for a stored instance (keys in Orthanc's order)."""
    ref = result.instance
    return {
        "ID": ref.public_id,
        "ParentPatient": ref.patient_id,
        "ParentSeries": ref.series_id,
        "ParentStudy": ref.study_id,
        "Path": f"/instances/{ref.public_id}",
        "Status": "AlreadyStored" if result.outcome is StoreOutcome.DUPLICATE else "Success",
    }


@contextlib.contextmanager
def _spooled(hub: Hub) -> Iterator[tuple[Path, int, bytes]]:
    """The request body in a temporary file next to the staged blobs (so that ingest can link it);
    yields (path, size, first bytes). A crash leaves it where blob recovery deletes it."""
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=hub.blobs.session_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := request.stream.read(CHUNK):
                out.write(chunk)
            size = out.tell()
        with open(path, "rb") as f:
            head = f.read(4)
        yield path, size, head
    finally:
        path.unlink(missing_ok=True)


def _gunzip(path: Path) -> Path:
    """Inflate a ``Content-Encoding: gzip`` body into a sibling temporary file."""
    target = path.with_name(path.name + ".dcm")
    try:
        with open(path, "rb") as src, open(target, "wb") as out:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while chunk := src.read(CHUNK):
                out.write(inflater.decompress(chunk))
            out.write(inflater.flush())
            if not inflater.eof:
                raise zlib.error("truncated gzip stream")
    except zlib.error:
        target.unlink(missing_ok=True)
        raise HubError("bad_file_format", "Cannot uncompress the gzip body") from None
    return target


@bp.post("/instances")
@requires("uploader")
def upload_instances() -> Response:
    hub = _hub()
    origin = Origin("rest", remote_ip=request.remote_addr or "", user=current_principal().name)
    with _spooled(hub) as (path, size, head):
        if size == 0:
            return orthanc_error(400, BAD_FILE_FORMAT, "Received an empty DICOM file")
        if head in ZIP_MAGIC:
            return _upload_zip(hub, origin, path)
        source = path
        if request.headers.get("Content-Encoding", "").strip().lower() == "gzip":
            source = _gunzip(path)
        try:
            result = hub.ingest.store(origin, source, consume=True)
        except HubError as exc:
            if exc.code == "bad_file_format":
                return orthanc_error(400, BAD_FILE_FORMAT,
                                      f"Cannot parse an invalid DICOM file (size: {source.stat().st_size} bytes)")
            if exc.code == "missing_attribute":
                return orthanc_error(404, INEXISTENT_TAG)
            raise
        finally:
            if source != path:
                source.unlink(missing_ok=True)
        return jsonify(_answer(result))


def _upload_zip(hub: Hub, origin: Origin, path: Path) -> Response:
    """Store each member of a ZIP in archive order (directories and empty files skipped)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return orthanc_error(400, BAD_FILE_FORMAT, "Cannot open ZIP archive from memory buffer")
    answers: list[dict[str, str]] = []
    with archive:
        members = archive.infolist()
        if not members:  # Orthanc (minizip) cannot open an empty archive either
            return orthanc_error(400, BAD_FILE_FORMAT, "Cannot open ZIP archive from memory buffer")
        for info in members:
            if info.is_dir() or info.file_size == 0:
                continue
            try:
                with archive.open(info) as member:
                    result = hub.ingest.store(origin, member)
            except HubError as exc:
                if exc.code not in SKIPPED_IN_ZIP:
                    raise
                log.warning("ZIP upload: member %d skipped (%s): %s", len(answers), SKIPPED_IN_ZIP[exc.code],
                            exc.message)
                continue
            except (RuntimeError, NotImplementedError) as exc:  # encrypted or unknown compression method
                log.warning("ZIP upload: member %d skipped: %s", len(answers), exc)
                continue
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # damaged data: stop there, as Orthanc
                log.warning("ZIP upload stopped after %d instances: %s", len(answers), exc)
                return orthanc_error(400, BAD_FILE_FORMAT)
            answers.append(_answer(result))
    return jsonify(answers)

