"""Orthanc REST API: ``/jobs`` (Orthanc 1.10 semantics and JSON shapes) over :mod:`hub.services.jobs`.

``GET /jobs`` (``?expand``), ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel|pause|resume|resubmit``
(``{}``; 400 when the job is unknown or not in a state that allows it, as Orthanc) and
``GET /jobs/{id}/{output}`` for a file a job left (an archive job's ``archive``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_file

from hub.errors import HubError
from hub.services.jobs import JobInfo, JobState
from interfaces.http.context import hub as _hub
from interfaces.http.errors import ORTHANC_STATUS, error_response

bp = Blueprint("orthanc_jobs", __name__)

CANCELED = (37, "This job was canceled")
NETWORK = (9, "Error in the network protocol")




def orthanc_time(value: datetime) -> str:
    """Orthanc's ISO 8601 basic format with microseconds, in UTC (``20261122T045331.799819``)."""
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%f")


def error_fields(info: JobInfo) -> tuple[int, str, str]:
    """``ErrorCode``, ``ErrorDescription``, ``ErrorDetails`` of a job (Orthanc ``ErrorCode`` values)."""
    if info.state != JobState.FAILURE:
        return 0, "Success", ""
    if info.canceled or info.error is None:
        return CANCELED[0], CANCELED[1], ""
    if info.error.code == "remote_failure":
        return NETWORK[0], NETWORK[1], info.error.message
    code, description = ORTHANC_STATUS.get(info.error.http_status, (-1, "Internal error"))
    return code, description, info.error.message


def job_json(info: JobInfo) -> dict[str, Any]:
    """Orthanc ``JobInfo::Format``: keys in Orthanc's (alphabetical) order; ``CompletionTime``
    only once the job succeeded or failed."""
    code, description, details = error_fields(info)
    out: dict[str, Any] = {}
    if info.completed is not None:
        out["CompletionTime"] = orthanc_time(info.completed)
    out.update({
        "Content": info.content,
        "CreationTime": orthanc_time(info.created),
        "EffectiveRuntime": round(info.runtime, 3),
        "ErrorCode": code,
        "ErrorDescription": description,
        "ErrorDetails": details,
        "ID": info.id,
        "Priority": info.priority,
        "Progress": info.progress,
        "State": str(info.state),
        "Timestamp": orthanc_time(datetime.now(UTC)),
        "Type": info.type,
    })
    return out


@bp.get("/jobs")
def list_jobs():  # noqa: ANN201
    jobs = _hub().jobs.list()
    if "expand" in request.args:
        return jsonify([job_json(j) for j in jobs])
    return jsonify([j.id for j in jobs])


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):  # noqa: ANN201
    info = _hub().jobs.get(job_id)
    if info is None:
        raise HubError("unknown_resource", f"unknown job {job_id!r}")
    return jsonify(job_json(info))


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str):  # noqa: ANN201
    jobs = _hub().jobs
    actions = {"cancel": jobs.cancel, "pause": jobs.pause, "resume": jobs.resume, "resubmit": jobs.resubmit}
    if action not in actions:  # GET /jobs/{id}/{output} is the only other route there
        return error_response(405, f"{request.method} is not allowed on a job output")
    if not actions[action](job_id):
        raise HubError("bad_request", f"cannot {action} job {job_id!r} (unknown, or not in a state that allows it)")
    return jsonify({})


@bp.get("/jobs/<job_id>/<name>")
def job_output(job_id: str, name: str) -> Response:
    out = _hub().jobs.output(job_id, name)
    if out is None or not out.path.is_file():
        raise HubError("unknown_resource", f"Job has no such output: {name}")
    resp = send_file(out.path, mimetype=out.content_type, conditional=False)
    if out.filename:
        resp.headers["Content-Disposition"] = f'filename="{out.filename}"'
    return resp
