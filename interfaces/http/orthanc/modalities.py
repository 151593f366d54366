"""Orthanc REST API: ``/modalities`` (Orthanc 1.10 semantics and JSON shapes).

The registry (``GET``/``PUT``/``DELETE``, kept in the database), C-ECHO, C-STORE of archived
resources as a ``DicomModalityStore`` job and C-MOVE as a ``DicomMoveScu`` job, through the hub's
DICOM SCU. ``/modalities/{name}/query`` and ``/queries`` are in :mod:`.modalities_queries`.
A remote node that fails answers like Orthanc: 500 ("Error in the network protocol"), 422 when the
remote answered a C-FIND/C-MOVE with 0xC000 (unable to process).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydicom
from flask import Blueprint, Response, jsonify, request
from pydicom.errors import InvalidDicomError

from hub.app import Hub
from hub.errors import HubError
from hub.services.jobs import JobContext, Run
from hub.services.modalities import RemoteModality
from hub.services.remote import RemoteError, RemoteService
from interfaces.dimse.scu import PynetdicomClient
from interfaces.http.context import hub
from interfaces.http.errors import error_response
from interfaces.http.orthanc import modalities_json as mj

bp = Blueprint("orthanc_modalities", __name__)

_ORTHANC_ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{8}){4}$")  # Orthanc Toolbox::IsSHA1
OPERATIONS = ["configuration", "echo", "move", "query", "store", "store-straight"]
NETWORK_ERROR = (9, "Error in the network protocol")




def empty() -> Response:
    return Response(b"", 200, mimetype="text/plain")


def remote_service(h: Hub, modality: RemoteModality | None = None, *, local_aet: str = "",
                   timeout: int = 0) -> RemoteService:
    """The SCU service towards ``modality``: our AE title is ``local_aet``, else the modality's
    ``LocalAet``, else ``ae_title``; ``timeout`` (else the modality's) replaces the [dicom] ones."""
    settings = h.settings
    aet = local_aet or (modality.local_aet if modality else "")
    seconds = timeout or (modality.timeout if modality else 0)
    if aet:
        settings = dataclasses.replace(settings, ae_title=aet)
    if seconds:
        settings = dataclasses.replace(settings, dicom=dataclasses.replace(
            settings.dicom, acse_timeout=seconds, dimse_timeout=seconds, network_timeout=seconds))
    return RemoteService.build(settings, PynetdicomClient(settings), h.db, h.blobs, directory=h.modalities)


@bp.errorhandler(RemoteError)
def _remote_error(exc: RemoteError) -> Response:
    """Orthanc ``ErrorCode_NetworkProtocol``: 422 for 0xC000 from a C-FIND/C-MOVE SCP, else 500."""
    status = 422 if exc.kind == "failed" and exc.status == 0xC000 else 500
    resp = error_response(status, exc.message)
    body = resp.get_json()
    body["OrthancStatus"], body["OrthancError"] = NETWORK_ERROR
    resp.set_data(json.dumps(body))
    return resp


def submit_job(h: Hub, body: Any, job_type: str, run: Run, **kwargs: Any) -> dict[str, Any]:  # noqa: ANN401
    """``h.jobs.submit_request``; a remote failure of a synchronous job answers 500 whatever the
    DIMSE status, as Orthanc (its jobs keep the error code, not the 422 of a direct C-FIND/C-MOVE)."""
    try:
        return h.jobs.submit_request(body, job_type, run, **kwargs)
    except RemoteError as exc:
        raise RemoteError(exc.kind, exc.message) from exc


def move_failure(m: RemoteModality, status: int) -> RemoteError:
    """Orthanc's error for a C-MOVE whose final status is not Success (PS3.4 C.4.2.1.5)."""
    hint = " (unable to process - resource not found ?)" if status == 0xC000 else ""
    return RemoteError("failed", f'C-MOVE SCU to AET "{m.aet}" has failed with DIMSE status 0x{status:04X}{hint}',
                       status=status)


# --------------------------------------------------------------------------- registry


@bp.get("/modalities")
def list_modalities():  # noqa: ANN201
    current = hub().modalities.modalities
    if mj.flag("expand"):
        return jsonify({name: mj.modality_to_orthanc(m) for name, m in current.items()})
    return jsonify(list(current))


@bp.get("/modalities/<name>")
def modality_operations(name: str):  # noqa: ANN201
    hub().modalities.require(name)
    return jsonify(OPERATIONS)


@bp.get("/modalities/<name>/configuration")
def modality_configuration(name: str):  # noqa: ANN201
    return jsonify(mj.modality_to_orthanc(hub().modalities.require(name)))


@bp.put("/modalities/<name>")
def put_modality(name: str) -> Response:
    hub().modalities.put(mj.modality_from_orthanc(name, mj.json_body("Bad file format")))
    return empty()


@bp.delete("/modalities/<name>")
def delete_modality(name: str) -> Response:
    hub().modalities.remove(name)
    return empty()


# --------------------------------------------------------------------------- C-ECHO


@bp.post("/modalities/<name>/echo")
def echo(name: str):  # noqa: ANN201
    """C-ECHO (PS3.4 A.4); ``CheckFind``: then a C-FIND of a random study, as Orthanc 1.8.1+."""
    h = hub()
    m = h.modalities.require(name)
    body = mj.json_body("Cannot parse the JSON body", empty={})
    if not isinstance(body, dict):
        body = {}
    service = remote_service(h, m, timeout=mj.unsigned(body, "Timeout", 0))
    result = service.echo(m)
    if not result.ok:
        raise RemoteError("failed", f"{name}: C-ECHO answered status 0x{result.status:04X}", status=result.status)
    if body.get("CheckFind") is True:
        from pydicom.uid import generate_uid

        service.find(m, "STUDY", {"StudyInstanceUID": generate_uid()})
    return jsonify({})


# --------------------------------------------------------------------------- C-STORE


def _store_request() -> tuple[list[str], dict[str, Any]]:
    """Orthanc ``GetInstancesToExport``: an Orthanc id as plain text, a JSON string, a list of ids,
    or ``{"Resources": [...], ...options}``."""
    raw = request.get_data().decode("utf-8", "replace").strip()
    body: Any = [raw] if _ORTHANC_ID.match(raw) else mj.json_body("Must provide a JSON value")
    if isinstance(body, str):
        body = [body]
    options: dict[str, Any] = {}
    if isinstance(body, dict):
        if "Resources" not in body:
            raise HubError("bad_request", 'Missing field in JSON: "Resources"')
        options = body
        body = body["Resources"]
        if not isinstance(body, list):
            raise HubError("bad_request", 'JSON field "Resources" must contain an array')
    elif not isinstance(body, list):
        raise HubError("bad_request", "Must provide a JSON object, or a JSON array of strings")
    ids = []
    for item in body:
        if not isinstance(item, str):
            raise HubError("bad_request", "Resources to be exported must be specified as a JSON array of strings")
        if not _ORTHANC_ID.match(item.strip()):
            raise HubError("bad_request", f"This string is not a valid Orthanc identifier: {item.strip()}")
        ids.append(item.strip())
    return ids, options


def _option(options: Mapping[str, Any], key: str, default: str) -> str:
    value = options.get(key, default)
    if not isinstance(value, str):
        raise HubError("bad_request", f"String value expected in field: {key}")
    return value


@bp.post("/modalities/<name>/store")
def store(name: str):  # noqa: ANN201
    """C-STORE SCU of archived resources (PS3.4 B.2) as a ``DicomModalityStore`` job, synchronous
    by default. Options: ``LocalAet``, ``CalledAet``, ``Host``, ``Port``, ``Timeout``,
    ``Permissive`` (failed instances are counted instead of failing the job), ``Synchronous`` /
    ``Asynchronous``, ``Priority``."""
    h = hub()
    m = h.modalities.require(name)
    ids, options = _store_request()
    port = options.get("Port", m.port)
    if isinstance(port, bool) or not isinstance(port, int):
        raise HubError("bad_request", "Unsigned integer value expected in field: Port")
    target = dataclasses.replace(m, aet=_option(options, "CalledAet", m.aet), host=_option(options, "Host", m.host),
                                 port=port)
    local_aet = _option(options, "LocalAet", m.local_aet or h.settings.ae_title)
    permissive = options.get("Permissive", False)
    if not isinstance(permissive, bool):
        raise HubError("bad_request", "Boolean value expected in field: Permissive")
    service = remote_service(h, m, local_aet=local_aet, timeout=mj.unsigned(options, "Timeout", 0))
    instances = [i for _, _, found in service.resolve_resources(ids) for i in found]

    def run(ctx: JobContext) -> dict[str, Any]:
        report = service.store_instances(target, instances, progress=ctx.progress, check=ctx.check)
        failed = [item for item in report.items if not item.ok]
        if failed and not permissive:
            first = failed[0]
            status = f"DIMSE status 0x{first.status:04X}" if first.status is not None else first.error
            raise RemoteError("failed", f'C-STORE SCU to AET "{target.aet}" has failed for {len(failed)} '
                              f"instance(s), first {first.label}: {status}", status=first.status)
        return {"FailedInstancesCount": len(failed)}

    content = {"Description": "REST API", "FailedInstancesCount": 0, "InstancesCount": len(instances),
               "LocalAet": local_aet, "ParentResources": sorted(set(ids)), "RemoteAet": target.aet}
    return jsonify(submit_job(h, options, "DicomModalityStore", run, content=content))


@bp.post("/modalities/<name>/store-straight")
def store_straight(name: str):  # noqa: ANN201
    """C-STORE of the DICOM file in the body, as it is, without storing it here (Orthanc 1.6+)."""
    h = hub()
    m = h.modalities.require(name)
    with tempfile.TemporaryDirectory(prefix="rishub-straight-") as tmp:
        path = Path(tmp) / "instance.dcm"
        path.write_bytes(request.get_data())
        try:
            sop_class = str(pydicom.dcmread(path, stop_before_pixels=True).get("SOPClassUID", ""))
        except (InvalidDicomError, ValueError, EOFError) as exc:
            raise HubError("bad_file_format", f"not a DICOM file: {exc}") from None
        item = remote_service(h, m).store(m, [path]).items[0]
    if not item.ok:
        raise RemoteError("failed", f'C-STORE SCU to AET "{m.aet}" has failed: {item.error or hex(item.status or 0)}',
                          status=item.status)
    return jsonify({"SOPClassUID": sop_class, "SOPInstanceUID": item.sop_instance_uid})


# --------------------------------------------------------------------------- C-MOVE


@bp.post("/modalities/<name>/move")
def move(name: str):  # noqa: ANN201
    """C-MOVE SCU (PS3.4 C.4.2): ``{"Level", "Resources": [{tag: value}], "TargetAet"}``, one
    C-MOVE per resource with the identifiers of its level, as a ``DicomMoveScu`` job. Synchronous
    answers ``{}`` (Orthanc 1.10); ``Asynchronous`` answers the job (Orthanc 1.11+)."""
    h = hub()
    body = mj.json_body("Must provide a JSON body containing fields Resources and Level")
    if not (isinstance(body, dict) and isinstance(body.get("Resources"), list) and isinstance(body.get("Level"), str)):
        raise HubError("bad_request", "Must provide a JSON body containing fields Resources and Level")
    lvl = mj.level(body["Level"])
    m = h.modalities.require(name)
    local_aet = _option(body, "LocalAet", m.local_aet or h.settings.ae_title)
    target_aet = _option(body, "TargetAet", h.settings.ae_title)
    queries = []
    for resource in body["Resources"]:
        keys = mj.tags_map(resource, "Resources elements")
        for key in mj.MOVE_KEYS[lvl]:
            if key not in keys:
                raise HubError("bad_request", f"Missing tag {key} for a {lvl} level C-MOVE")
        queries.append({"QueryRetrieveLevel": mj.QR_LEVEL[lvl], **keys})
    service = remote_service(h, m, local_aet=local_aet, timeout=mj.unsigned(body, "Timeout", 0))
    run = move_job(service, m, queries, target_aet)
    content = {"Description": "REST API", "LocalAet": local_aet,
               "Query": [mj.dataset_json(q, "short") for q in queries], "RemoteAet": m.aet}
    return jsonify(h.jobs.submit_request(body, "DicomMoveScu", run, content=content,
                                         synchronous_answer=lambda _: {}))


def move_job(service: RemoteService, m: RemoteModality, queries: list[dict[str, str]], target_aet: str):  # noqa: ANN201
    """The ``run`` of a ``DicomMoveScu`` job: one C-MOVE per identifier (Orthanc ``Move(findResult)``:
    the keys of the identifier's QueryRetrieveLevel), stopping at the first failure."""

    def run(ctx: JobContext) -> None:
        for done, query in enumerate(queries):
            ctx.check()
            lvl = mj.FROM_QR_LEVEL.get(query.get("QueryRetrieveLevel", ""), "")
            if not lvl:
                raise HubError("bad_request", "Missing tag 0008,0052 (QueryRetrieveLevel)")
            keys = {}
            for key in mj.MOVE_KEYS[lvl]:
                if key not in query:
                    raise HubError("bad_request", f"Missing tag {key}")
                keys[key] = query[key]
            result = service.move(m, mj.QR_LEVEL[lvl], keys, target_aet)
            if result.status != 0x0000:
                raise move_failure(m, result.status)
            ctx.progress(done + 1, len(queries))

    return run


# The /queries routes live in their own module, on a blueprint nested in this one (same errors).
from interfaces.http.orthanc import modalities_queries  # noqa: E402

bp.register_blueprint(modalities_queries.bp)
