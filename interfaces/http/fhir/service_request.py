"""FHIR R4 ServiceRequest (http://hl7.org/fhir/R4/servicerequest.html) and ImagingStudy create/update
with status ``registered``, mapped onto the order service that HL7 orders use (mapping-reference 3.3):
the order's worklist item is visible to MWL C-FIND when the answer is sent.

Create honours ``If-None-Exist`` (conditional create, http.html#ccreate), update ``If-Match``
(http.html#concurrency), both ``Prefer: return=minimal|representation|OperationOutcome``."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request

from hub.errors import HubError
from hub.services.smart import parse_scopes, scope_claim
from interfaces.http.auth import current_principal, requires
from interfaces.http.fhir import imaging_study
from interfaces.http.fhir.common import (
    REGISTRY,
    FhirError,
    ResourceSupport,
    SearchParam,
    authorize,
    bp,
    check_if_match,
    fhir_base,
    fhir_response,
    hub,
    outcome,
    parse_reference,
    parse_search,
    register,
    resource_response,
    searchset,
)

register(ResourceSupport(
    "ServiceRequest", ["read", "search-type", "create", "update"],
    params=[
        SearchParam("patient", "reference", "Patient/<id>"),
        SearchParam("subject", "reference", "same as patient"),
        SearchParam("identifier", "token", "any identifier: accession (ACSN), placer, filler, urn:dicom:uid"),
        SearchParam("status", "token", "active | on-hold | revoked | completed | entered-in-error"),
        SearchParam("authored", "date", "when the order was received, with prefixes"),
    ],
    documentation=("Orders of the hub (HL7 or FHIR): create schedules Modality Worklist items, status=revoked "
                   "cancels them. Conditional create on If-None-Exist: identifier=[system|]value."),
    extra={"conditionalCreate": True, "conditionalUpdate": False, "updateCreate": False},
))


REGISTRY["ImagingStudy"].interactions.extend(["create", "update"])


def _orders() -> Any:  # noqa: ANN401 - hub.services.fhir_orders.FhirOrderService
    return hub().fhir_orders


def _writer(resource_type: str, interaction: str) -> None:
    """Writes: SMART scopes decide for bearer tokens that carry them; otherwise (Basic, tokens without
    SMART scopes) the hub's own roles: ``uploader`` or ``admin`` may place orders, ``user`` may not."""
    authorize(resource_type, interaction)
    principal = current_principal()
    if principal.via == "bearer" and parse_scopes(scope_claim(principal.claims)).smart:
        return
    if not principal.has("uploader"):
        raise FhirError(403, "placing orders needs the 'uploader' role or a SMART write scope", "forbidden")


def _body(resource_type: str) -> dict[str, Any]:
    if request.mimetype not in ("application/fhir+json", "application/json", "application/json+fhir"):
        raise FhirError(415, "send application/fhir+json", "not-supported")
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        raise FhirError(400, "the body is not JSON", "invalid") from None
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise FhirError(400, f"the body must be a {resource_type} resource", "invalid")
    return body


def _written(resource: dict[str, Any], status: int, location: str) -> Response:
    """Create/update answer per ``Prefer: return=`` (default: the resource)."""
    prefer = request.headers.get("Prefer", "").replace(" ", "")
    headers = {"Location": location} if status == 201 else {}
    if "return=minimal" in prefer:
        resp = Response(status=status, headers=headers)
        resp.headers["ETag"] = f'W/"{resource["meta"]["versionId"]}"'
        return resp
    if "return=OperationOutcome" in prefer:
        return fhir_response(outcome("done", "informational", "information"), status, headers)
    return resource_response(resource, status, headers)


def _history_url(resource: dict[str, Any]) -> str:
    return f"{fhir_base()}/{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


@bp.post("/ServiceRequest")
@requires("user")
def create_service_request() -> Response:
    _writer("ServiceRequest", "create")
    resource, created = _orders().create(_body("ServiceRequest"), request.headers.get("If-None-Exist"))
    return _written(resource, 201 if created else 200, _history_url(resource))


@bp.put("/ServiceRequest/<rid>")
@requires("user")
def update_service_request(rid: str) -> Response:
    _writer("ServiceRequest", "update")
    resource = _orders().update(rid, _body("ServiceRequest"), request.headers.get("If-Match"))
    return _written(resource, 200, _history_url(resource))


def _visible(resource: dict[str, Any], allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    ref = (resource.get("subject") or {}).get("reference", "")
    return ref.removeprefix("Patient/") in allowed


@bp.get("/ServiceRequest/<rid>")
def read_service_request(rid: str) -> Response:
    allowed = authorize("ServiceRequest", "read")
    try:
        resource = _orders().read(rid)
    except HubError as exc:
        if exc.http_status == 404:
            raise FhirError(404, f"ServiceRequest/{rid} is not known", "not-found") from None
        raise
    if not _visible(resource, allowed):
        raise FhirError(404, f"ServiceRequest/{rid} is not known", "not-found")
    return resource_response(resource)


@bp.get("/ServiceRequest")
def search_service_request() -> Response:
    allowed = authorize("ServiceRequest", "search")
    s = parse_search("ServiceRequest")
    kw: dict[str, Any] = {"count": s.count, "offset": s.offset}
    patients = [parse_reference(v, "Patient") for name in ("patient", "subject") for vals in s.values(name)
                for v in vals]
    if allowed is not None:
        patients = [p for p in patients if p in allowed] if patients else sorted(allowed)
        if not patients:
            return fhir_response(searchset("ServiceRequest", s, [], 0, []))
    if patients:
        keys = hub().fhir.patient_keys(patients[0] or "")
        if not keys:
            return fhir_response(searchset("ServiceRequest", s, [], 0, []))
        kw["patient_id"], kw["patient_issuer"] = keys[0].patient_id, keys[0].issuer
    for vals in s.values("identifier"):
        kw["identifier"] = vals[0]
    statuses = [v for vals in s.values("status") for v in vals]
    if statuses:
        kw["status"] = ",".join(statuses)
    authored = []
    for vals in s.values("authored"):
        for v in vals:
            prefix = v[:2] if v[:2].isalpha() else "eq"
            authored.append((prefix, v[2:] if v[:2].isalpha() else v))
    kw["authored"] = authored
    page, total = _orders().search(**kw)
    return fhir_response(searchset("ServiceRequest", s, page, total, []))


def _studies_of(rid: str) -> list[str] | None:
    """``ImagingStudy?basedon=ServiceRequest/<id>``: the Study Instance UID the order requested."""
    try:
        resource = _orders().read(rid)
    except HubError:
        return None
    return [i["value"].removeprefix("urn:oid:") for i in resource.get("identifier", [])
            if i.get("system") == "urn:dicom:uid"] or None


imaging_study.SERVICE_REQUEST_STUDIES.append(_studies_of)


@bp.post("/ImagingStudy")
@requires("user")
def create_imaging_study() -> Response:
    """An ImagingStudy with status ``registered`` schedules its study (the IHE imaging-service-request IG)."""
    _writer("ImagingStudy", "create")
    body = _body("ImagingStudy")
    if body.get("status") != "registered":
        raise FhirError(422, "only an ImagingStudy with status registered can be created: it schedules a study",
                        "business-rule")
    order, created = _orders().schedule_imaging_study(body, request.headers.get("If-None-Exist"))
    study = hub().fhir.read_imaging_study(f"o-{order['id']}")
    if study is None:
        uid = next((i["value"].removeprefix("urn:oid:") for i in order.get("identifier", [])
                    if i.get("system") == "urn:dicom:uid"), "")
        raise FhirError(500, f"the scheduled study {uid} cannot be read back", "exception")
    return _written(study, 201 if created else 200, _history_url(study))


@bp.put("/ImagingStudy/<rid>")
@requires("user")
def update_imaging_study(rid: str) -> Response:
    """Reschedule (status ``registered``) or cancel (``cancelled``) a scheduled study; a study with
    images is the archive's and is not changed over FHIR (422)."""
    _writer("ImagingStudy", "update")
    body = _body("ImagingStudy")
    current = hub().fhir.read_imaging_study(rid)
    if current is None:
        raise FhirError(404, f"ImagingStudy/{rid} is not known", "not-found")
    if current["status"] not in ("registered", "cancelled") or not rid.startswith("o-"):
        raise FhirError(422, "only a scheduled study (no images yet) can be updated", "business-rule")
    if body.get("id") not in (None, rid):
        raise FhirError(400, "the resource id differs from the URL", "invalid")
    check_if_match(current)
    if body.get("status") not in ("registered", "cancelled", "entered-in-error"):
        raise FhirError(422, "status must be registered, cancelled or entered-in-error", "business-rule")
    order, _ = _orders().schedule_imaging_study(body)
    if f"o-{order['id']}" != rid:
        raise FhirError(409, "the resource names another study than the URL", "conflict")
    study = hub().fhir.read_imaging_study(rid)
    assert study is not None
    return _written(study, 200, _history_url(study))
