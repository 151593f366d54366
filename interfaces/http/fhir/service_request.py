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
    fhir_base,
    fhir_response,
    hub,
    outcome,
    register,
    resource_response,
    version_headers,
    with_version,
)
from interfaces.http.fhir.search import (
    Search,
    parse_search,
    searchset,
)

register(ResourceSupport(
    "ServiceRequest", ["read", "vread", "search-type", "create", "update"],
    params=[
        SearchParam("patient", "reference", "Patient/<id>; :identifier takes the Patient ID ([system|]value)",
                    ("identifier",)),
        SearchParam("subject", "reference", "same as patient", ("identifier",)),
        SearchParam("identifier", "token", "any identifier: accession (ACSN), placer, filler, urn:dicom:uid"),
        SearchParam("status", "token", "active | on-hold | revoked | completed | entered-in-error"),
        SearchParam("authored", "date", "ServiceRequest.authoredOn (else when the order was received), with prefixes"),
        SearchParam("_id", "token", "ServiceRequest id"),
    ],
    documentation=("Orders of the hub (HL7 or FHIR): create schedules Modality Worklist items, status=revoked "
                   "cancels them. Conditional create on If-None-Exist: identifier=[system|]value."),
    extra={"conditionalCreate": True, "conditionalUpdate": False, "updateCreate": False},
))


REGISTRY["ImagingStudy"].interactions.extend(["create", "update"])
REGISTRY["ImagingStudy"].extra.update({"conditionalCreate": True, "updateCreate": False})  # If-None-Exist honoured


def _orders() -> Any:  # noqa: ANN401 - hub.services.fhir_orders.FhirOrderService
    return hub().fhir_orders


def _writer(resource_type: str, interaction: str) -> set[str] | None:
    """Writes: SMART scopes decide for bearer tokens that carry them; otherwise (Basic, tokens without
    SMART scopes) the hub's own roles: ``uploader`` or ``admin`` may place orders, ``user`` may not.
    Returns the Patient ids a ``patient/`` scope limits the write to (None: any patient)."""
    allowed = authorize(resource_type, interaction)
    principal = current_principal()
    if principal.via == "bearer" and parse_scopes(scope_claim(principal.claims)).smart:
        return allowed
    if not principal.has("uploader"):
        raise FhirError(403, "placing orders needs the 'uploader' role or a SMART write scope", "forbidden")
    return allowed


def _own_subject(body: dict[str, Any], allowed: set[str] | None) -> None:
    """A ``patient/`` write scope covers the launch patient only (SMART App Launch 2.x, scopes and launch
    context): the body must name it as ``subject: {"reference": "Patient/<id>"}`` and that Patient must be
    known here (an identifier or a contained Patient could name anyone). 403 otherwise."""
    if allowed is None:
        return
    subject = body.get("subject") if isinstance(body.get("subject"), dict) else {}
    ref = str(subject.get("reference") or "")
    rid = ref.removeprefix("Patient/") if ref.startswith("Patient/") else ""
    if rid not in allowed or "identifier" in subject or hub().fhir.read_patient(rid) is None:
        raise FhirError(403, "a patient-context token may write only for its own patient, named as the subject "
                        "reference Patient/<id>", "forbidden")


def _own_resource(resource: dict[str, Any], allowed: set[str] | None) -> None:
    """An existing order (or study) outside a ``patient/`` scope's patient: 403, told without its content."""
    if not _visible(resource, allowed):
        raise FhirError(403, "the resource belongs to another patient than the token's", "forbidden")


def _no_id_mismatch(body: dict[str, Any], rid: str) -> None:
    """R4 http.html#update: the body SHALL carry an ``id`` equal to the URL's (400 otherwise)."""
    if "id" not in body:
        raise FhirError(400, "an update must carry the resource id", "required")
    if body["id"] != rid:
        raise FhirError(400, "the resource id differs from the URL", "invalid")


def _body(resource_type: str) -> dict[str, Any]:
    if request.mimetype not in ("application/fhir+json", "application/json", "application/json+fhir"):
        raise FhirError(415, "send application/fhir+json", "not-supported")
    try:
        body = json.loads(request.get_data(as_text=True) or "null")
    except ValueError:
        raise FhirError(400, "the body is not JSON", "invalid") from None
    except RecursionError:  # nested deeper than the parser goes: no resource is
        raise FhirError(400, "the body is nested too deeply", "invalid") from None
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise FhirError(400, f"the body must be a {resource_type} resource", "invalid")
    return body


def _written(resource: dict[str, Any], status: int, location: str) -> Response:
    """Create/update answer per ``Prefer: return=`` (default: the resource)."""
    prefer = request.headers.get("Prefer", "").replace(" ", "")
    headers = {"Location": location} if status == 201 else {}
    if "return=minimal" in prefer:
        resp = Response(status=status, headers=headers)
    elif "return=OperationOutcome" in prefer:
        resp = fhir_response(outcome("done", "informational", "information"), status, headers)
    else:
        return resource_response(resource, status, headers)
    return with_version(resp, *version_headers(resource))  # the version written, whatever the body (http.html#create)


def _history_url(resource: dict[str, Any]) -> str:
    return f"{fhir_base()}/{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


@bp.post("/ServiceRequest")
@requires("user")
def create_service_request() -> Response:
    allowed = _writer("ServiceRequest", "create")
    body = _body("ServiceRequest")
    _own_subject(body, allowed)
    resource, created = _orders().create(body, request.headers.get("If-None-Exist"))
    if not created:  # an If-None-Exist match is shown only when it is the token's patient's
        _own_resource(resource, allowed)
    return _written(resource, 201 if created else 200, _history_url(resource))


@bp.put("/ServiceRequest/<rid>")
@requires("user")
def update_service_request(rid: str) -> Response:
    allowed = _writer("ServiceRequest", "update")
    body = _body("ServiceRequest")
    _no_id_mismatch(body, rid)
    _own_subject(body, allowed)
    try:
        if allowed is not None and not _visible(_orders().read(rid), allowed):
            raise HubError("unknown_resource", "no such ServiceRequest")  # another patient's: unknown, as GET says
        resource = _orders().update(rid, body, request.headers.get("If-Match"))
    except HubError as exc:
        if exc.http_status == 404:
            raise _no_update_create("ServiceRequest", rid) from None
        raise
    return _written(resource, 200, _history_url(resource))


def _no_update_create(resource_type: str, rid: str) -> FhirError:
    """PUT to an id that does not exist (or that the token's patient scope hides): R4 http.html#update answers
    405 when the server does not let clients choose ids (``updateCreate: false``)."""
    return FhirError(405, f"{resource_type}/{rid} does not exist and this server does not create resources "
                          "with a client-chosen id (updateCreate false): POST it", "not-supported")


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


REQUEST_STATUS = "http://hl7.org/fhir/request-status"
IMAGING_STUDY_STATUS = ("registered", "available", "cancelled", "entered-in-error", "unknown")  # required binding
MAX_MATCHES = 1000  # orders one identifier token may match (the service's own limit)


def _statuses(s: Search) -> set[str] | None:
    """``status``: a comma list is OR, repeats are AND (R4 search.html#combining); a token's system must be
    request-status (``system|code``), ``|code`` (no system) matches nothing. None: no status asked."""
    wanted: set[str] | None = None
    for vals in s.values("status"):
        codes = set()
        for v in vals:
            system, sep, code = v.rpartition("|")
            if not sep or system == REQUEST_STATUS:
                codes.add(code)
        wanted = codes if wanted is None else wanted & codes
    return wanted


def _patients(s: Search, allowed: set[str] | None) -> set[str] | None:
    """``patient``/``subject`` (``:identifier``: by the Patient's identifier): OR within a value list, AND across
    repeats, within what the token may see."""
    wanted: set[str] | None = None
    for name in ("patient", "subject"):
        for modifier, vals in s.params.get(name, []):
            ids = {rid for v in vals for rid in imaging_study.patient_ids(modifier, v)}
            wanted = ids if wanted is None else wanted & ids
    if allowed is not None:
        wanted = set(allowed) if wanted is None else wanted & allowed
    return wanted


@bp.get("/ServiceRequest")
def search_service_request() -> Response:
    """Search by _id, patient, identifier, status and authored, each a comma list (OR) and repeatable (AND)."""
    allowed = authorize("ServiceRequest", "search")
    s = parse_search("ServiceRequest")
    empty = fhir_response(searchset("ServiceRequest", s, [], 0, []))
    kw: dict[str, Any] = {"ids": s.values("_id")}
    patients = _patients(s, allowed)
    if patients is not None:
        keys = [k for rid in sorted(patients) for k in hub().fhir.patient_keys(rid)]
        if not keys:
            return empty
        kw["patients"] = [(k.patient_id, k.issuer) for k in keys]
    statuses = _statuses(s)
    if statuses is not None:
        if not statuses:
            return empty
        kw["status"] = ",".join(sorted(statuses))
    # a comma list is OR, a repeat AND (search.html#combining)
    kw["authored"] = [[(v[:2], v[2:]) if v[:2].isalpha() else ("eq", v) for v in vals]
                      for vals in s.values("authored")]
    tokens = s.values("identifier")
    if not tokens:
        page, total = _orders().search(count=s.count, offset=s.offset, **kw)
        return fhir_response(searchset("ServiceRequest", s, page, total, []))
    found: dict[str, dict[str, Any]] | None = None
    for vals in tokens:  # each repeat: the orders carrying any of its tokens; repeats intersect
        hits: dict[str, dict[str, Any]] = {}
        for token in vals:
            matches, _ = _orders().search(identifier=token, count=MAX_MATCHES, offset=0, **kw)
            hits.update((m["id"], m) for m in matches)
        found = hits if found is None else {k: v for k, v in found.items() if k in hits}
    ordered = sorted((found or {}).values(), key=lambda r: int(r["id"]))
    return fhir_response(searchset("ServiceRequest", s, ordered[s.offset:s.offset + s.count], len(ordered), []))


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
    allowed = _writer("ImagingStudy", "create")
    body = _body("ImagingStudy")
    _own_subject(body, allowed)
    if body.get("status") != "registered":
        raise FhirError(422, "only an ImagingStudy with status registered can be created: it schedules a study",
                        "business-rule")
    order, created = _orders().schedule_imaging_study(body, request.headers.get("If-None-Exist"))
    if not created:
        _own_resource(order, allowed)
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
    allowed = _writer("ImagingStudy", "update")
    body = _body("ImagingStudy")
    _own_subject(body, allowed)
    current = hub().fhir.read_imaging_study(rid)
    if current is None or not _visible(current, allowed):
        raise _no_update_create("ImagingStudy", rid)
    if current["status"] not in ("registered", "cancelled") or not rid.startswith("o-"):
        raise FhirError(422, "only a scheduled study (no images yet) can be updated", "business-rule")
    _no_id_mismatch(body, rid)
    if body.get("status") not in IMAGING_STUDY_STATUS:  # a code outside the required binding: invalid
        raise FhirError(400, "ImagingStudy.status must be a code of imagingstudy-status", "invalid")
    if body.get("status") not in ("registered", "cancelled", "entered-in-error"):
        raise FhirError(422, "status must be registered, cancelled or entered-in-error", "business-rule")
    try:  # If-Match and the Study UID are checked on the locked order, before anything changes
        _orders().update_imaging_study(int(rid[2:]), body, request.headers.get("If-Match"))
    except HubError as exc:
        if exc.http_status == 404:  # removed meanwhile
            raise _no_update_create("ImagingStudy", rid) from None
        raise
    study = hub().fhir.read_imaging_study(rid)
    assert study is not None
    return _written(study, 200, _history_url(study))
