"""Orthanc REST API: ``POST /{patients|studies|series|instances}/{id}/modify`` and ``/anonymize``
(Orthanc 1.10 semantics and JSON shapes).

The instance level answers the changed DICOM file; the other levels store new instances and answer
``{Description, FailedInstancesCount, ID, InstancesCount, IsAnonymization, Path, PatientID, Type}``,
as a job of the hub's job service (``Asynchronous``/``Synchronous``/``Priority``; synchronous by
default). Refusals carry Orthanc's error JSON, with ``Details``.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from hub.app import Hub
from interfaces.http import auth
from mappings.modify import BAD_FILE_FORMAT, ModifyError

bp = Blueprint("orthanc_modify", __name__)

LEVEL = {"patients": "Patient", "studies": "Study", "series": "Series", "instances": "Instance"}
ROUTE = "/<any(patients, studies, series, instances):plural>/<public_id>/"


@bp.post(ROUTE + "modify")
def modify(plural: str, public_id: str) -> Response:
    """Modify a resource: new instances with tags replaced/removed (the instance level answers the file)."""
    return _change(plural, public_id, anonymize=False)


@bp.post(ROUTE + "anonymize")
def anonymize(plural: str, public_id: str) -> Response:
    """Anonymize a resource with the DICOM PS3.15 basic profile (the instance level answers the file)."""
    return _change(plural, public_id, anonymize=True)


def _change(plural: str, public_id: str, *, anonymize: bool) -> Response:
    hub: Hub = current_app.extensions["rishub"]
    service = hub.modify
    level = LEVEL[plural]
    body = _json_body()
    prepare = service.prepare_anonymize if anonymize else service.prepare_modify
    op = prepare(level, public_id, body)
    if level == "Instance":
        return Response(service.changed_file(op), mimetype="application/dicom")
    user = auth.current_principal().name
    content = {"Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": len(op.sources),
               "IsAnonymization": anonymize}
    answer = hub.jobs.submit_request(
        body, "ResourceModification",
        lambda ctx: service.run(op, user=user, progress=ctx.progress),
        content=content,
        synchronous_answer=lambda done: dict(sorted(done.items())),  # Orthanc's (alphabetical) key order
    )
    return jsonify(answer)


def _json_body() -> Any:  # noqa: ANN401 - parsed JSON
    """Orthanc ``ParseJsonRequest``: anything that is not JSON is a bad file format."""
    try:
        return json.loads(request.get_data() or b"")
    except (ValueError, UnicodeDecodeError):
        raise ModifyError(BAD_FILE_FORMAT) from None


@bp.errorhandler(ModifyError)
def _refused(exc: ModifyError) -> Response:
    """Orthanc's error JSON (keys in its order): ``Message`` is the error's name, ``Details`` the why."""
    body: dict[str, Any] = {}
    if exc.details:
        body["Details"] = exc.details
    body.update({
        "HttpError": "Bad Request",
        "HttpStatus": 400,
        "Message": exc.orthanc_error,
        "Method": request.method,
        "OrthancError": exc.orthanc_error,
        "OrthancStatus": exc.orthanc_status,
        "Uri": request.path,
    })
    resp = jsonify(body)
    resp.status_code = 400
    return resp
