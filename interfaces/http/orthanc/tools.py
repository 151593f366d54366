"""Orthanc REST API: ``/tools/find``, ``/tools/lookup``, ``/tools/now``, ``/tools/now-local`` and
``/tools/generate-uid`` (Orthanc 1.10 semantics and JSON shapes).

``/tools/find`` and ``/tools/lookup`` only read: a ``user`` may call them although they are POSTs.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request
from pydicom.uid import generate_uid

from hub.errors import HubError
from interfaces.http.auth import requires
from interfaces.http.context import hub as _hub
from mappings.orthanc_find import orthanc_find_to_query

bp = Blueprint("orthanc_tools", __name__)

UID_LEVELS = ("patient", "study", "series", "instance")




def _text(value: str) -> Response:
    return Response(value, mimetype="text/plain")


@bp.post("/tools/find")
@requires("user")
def find() -> Response:
    """Level, Query (Orthanc's wildcard/range/list rules), Expand, Limit, Since, CaseSensitive."""
    try:
        body = json.loads(request.get_data() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise HubError("bad_request", "The body must contain a JSON object") from None
    return jsonify(_hub().resources.find(orthanc_find_to_query(body)))


@bp.post("/tools/lookup")
@requires("user")
def lookup() -> Response:
    """The body is a PatientID, StudyInstanceUID, SeriesInstanceUID or SOPInstanceUID."""
    try:
        value = request.get_data().decode("utf-8")
    except UnicodeDecodeError:
        raise HubError("bad_request", "The body must be UTF-8 text") from None
    if "\x00" in value or len(value) > 1024:  # no identifier holds a NUL (PostgreSQL refuses one) or is that long
        raise HubError("bad_request", "The body must be a PatientID or a DICOM UID")
    return jsonify(_hub().resources.lookup(value))


@bp.get("/tools/now")
def now() -> Response:
    """Current UTC time in Orthanc's format (``20261122T045502``)."""
    return _text(datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))


@bp.get("/tools/now-local")
def now_local() -> Response:
    return _text(datetime.now().strftime("%Y%m%dT%H%M%S"))


@bp.get("/tools/generate-uid")
def generate() -> Response:
    """A new identifier: a UUID for a patient (as Orthanc), a DICOM UID for the other levels."""
    level = request.args.get("level", "").strip().lower()
    if level not in UID_LEVELS:
        raise HubError("bad_request", 'The "level" argument must be patient, study, series or instance')
    return _text(str(uuid.uuid4()) if level == "patient" else generate_uid())
