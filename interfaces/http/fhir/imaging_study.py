"""FHIR R4 ImagingStudy read and search (http://hl7.org/fhir/R4/imagingstudy.html#search) over the
archive (status ``available``) and the orders without images (``registered`` / ``cancelled``)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from hub.errors import HubError
from hub.services.fhir import PatientCriteria, PatientKey, StudyCriteria
from interfaces.http.fhir.common import (
    FhirError,
    ResourceSupport,
    SearchParam,
    authorize,
    bp,
    fhir_response,
    hub,
    not_found,
    outcome,
    register,
    resource_response,
)
from interfaces.http.fhir.endpoint import current_endpoint
from interfaces.http.fhir.search import (
    Search,
    parse_date,
    parse_reference,
    parse_search,
    parse_token,
    searchset,
)
from mappings.dicom_to_fhir import DICOM_UID, ENDPOINT_ID
from mappings.dicom_to_fhir_values import DCM

SORTS = {"started", "_lastUpdated", "_id"}
# ServiceRequest id -> Study Instance UIDs it requested: filled by the ServiceRequest provider, so
# that ``basedon=ServiceRequest/<id>`` can be answered; without one only ``basedon:identifier`` works.
SERVICE_REQUEST_STUDIES: list[Callable[[str], list[str] | None]] = []

register(ResourceSupport(
    "ImagingStudy", ["read", "vread", "search-type"],
    params=[
        SearchParam("_id", "token", "ImagingStudy id"),
        SearchParam("_lastUpdated", "date", "meta.lastUpdated (UTC), with prefixes"),
        SearchParam("patient", "reference", "Patient/<id>; :identifier takes the Patient ID", ("identifier",)),
        SearchParam("subject", "reference", "same as patient (only Patient subjects exist)", ("identifier",)),
        SearchParam("identifier", "token",
                    "urn:dicom:uid|urn:oid:<Study Instance UID>, or an Accession Number: system|value must "
                    "match its issuer's system, |value one without system, value any"),
        SearchParam("started", "date", "Study Date/Time (orders: a scheduled step's start) as an instant, "
                                       "placed by (0008,0201) else the hub's zone; eq ne lt gt le ge sa eb"),
        SearchParam("modality", "token", f"{DCM}|<code> (any series' modality; orders: a step's modality)"),
        SearchParam("status", "token", "available (stored), registered or cancelled (orders without images)"),
        SearchParam("basedon", "reference", "basedon:identifier = Accession, placer or filler order number",
                    ("identifier",)),
        SearchParam("endpoint", "reference", f"Endpoint/{ENDPOINT_ID}, which every ImagingStudy references"),
    ],
    includes=["ImagingStudy:subject", "ImagingStudy:patient", "ImagingStudy:endpoint"],
    documentation=("Ids: the Orthanc study id for stored studies, o-<order> for orders without images (such an "
                   "id reads as the stored study once images arrive). _sort: started, _lastUpdated, _id "
                   "(default -started). Paging with _count (max 1000) and _offset."),
))


def patient_ids(modifier: str, value: str) -> list[str]:
    """The Patient ids one ``patient``/``subject`` value names: ``Patient/<id>`` (or a bare id, or a URL), or with
    ``:identifier`` a ``[system|]value`` token matched against the Patients' identifiers (search.html#reference)."""
    if modifier == "identifier":
        return [p["id"] for p in hub().fhir.search_patients(
            PatientCriteria(identifiers=[[parse_token(value)]]), 0, 100).resources]
    rid = parse_reference(value, "Patient")
    return [rid] if rid else []


def _patient_keys(s: Search) -> list[list[PatientKey]]:
    groups = []
    for name in ("patient", "subject"):
        for modifier, values in s.params.get(name, []):
            groups.append([k for v in values for rid in patient_ids(modifier, v) for k in hub().fhir.patient_keys(rid)])
    return groups


def _identifier_tokens(system: str | None, code: str) -> list[tuple[str, str, str | None]]:
    """One ``identifier`` token (R4 search.html#token) as (kind, value, system) alternatives: the Study UID
    identifier is ``urn:dicom:uid`` | ``urn:oid:<uid>``; the accession's system is its issuer's (or none)."""
    out: list[tuple[str, str, str | None]] = []
    if system in (None, DICOM_UID) and code.startswith("urn:oid:"):
        out.append(("uid", code.removeprefix("urn:oid:"), None))
    if system != DICOM_UID:
        out.append(("accession", code, system))
    return out


def criteria(s: Search) -> StudyCriteria:
    """The search parameters as the store's criteria (AND of OR groups)."""
    c = StudyCriteria(ids=s.values("_id"), patients=_patient_keys(s))
    for values in s.values("identifier"):
        group = []
        for v in values:
            group += _identifier_tokens(*parse_token(v))
        c.identifiers.append(group)
    for name, target in (("started", c.started), ("_lastUpdated", c.last_updated)):
        for values in s.values(name):  # a comma list is OR (search.html#combining), a repeat AND
            target.append([parse_date(v, hub().fhir.tz, utc=name == "_lastUpdated") for v in values])
    for values in s.values("modality"):
        c.modalities.append([code for system, code in map(parse_token, values) if system in (None, "", DCM)])
    c.statuses = [[parse_token(v)[1] for v in values] for values in s.values("status")]
    for modifier, values in s.params.get("basedon", []):
        if modifier == "identifier":
            c.based_on.append([(code, system) for system, code in map(parse_token, values)])
            continue
        uids: list[tuple[str, str, str | None]] = []
        for v in values:
            rid = parse_reference(v, "ServiceRequest")
            found = [r(rid) for r in SERVICE_REQUEST_STUDIES] if rid else []
            if rid and not SERVICE_REQUEST_STUDIES:
                raise FhirError(400, "basedon by reference needs the ServiceRequest provider; "
                                "use basedon:identifier=<accession>", "not-supported")
            uids += [("uid", u, None) for f in found for u in (f or [])]
        c.identifiers.append(uids)
    for values in s.values("endpoint"):
        if not any(parse_reference(v, "Endpoint") == ENDPOINT_ID for v in values):
            c.nothing = True
    return c


@bp.get("/ImagingStudy/<rid>")
def read_imaging_study(rid: str) -> Response:
    allowed = authorize("ImagingStudy", "read")
    resource = hub().fhir.read_imaging_study(rid)
    if resource is None or (allowed is not None and resource["subject"]["reference"][8:] not in allowed):
        raise not_found("ImagingStudy", rid)
    return resource_response(resource)


@bp.get("/ImagingStudy")
def search_imaging_study() -> Response:
    allowed = authorize("ImagingStudy", "search")
    s = parse_search("ImagingStudy", SORTS)
    c = criteria(s)
    if allowed is not None:
        c.patients.append([k for rid in allowed for k in hub().fhir.patient_keys(rid)])
    subject = bool({"ImagingStudy:subject", "ImagingStudy:patient"} & set(s.includes))
    patients = _include_scope("Patient") if subject else set()
    result = hub().fhir.search_imaging_studies(c, s.sort or [("started", True)], s.offset, s.count,
                                               patients != set())
    included = [p for p in result.included if patients is None or p["id"] in patients]
    dropped = sorted({r["subject"]["reference"] for r in result.resources} - {f"Patient/{p['id']}" for p in included}
                     ) if subject and patients is not None else []
    if "ImagingStudy:endpoint" in s.includes and result.resources:
        if _include_scope("Endpoint") is None:
            included = [*included, current_endpoint()]
        else:
            dropped.append(f"Endpoint/{ENDPOINT_ID}")
    bundle = searchset("ImagingStudy", s, result.resources, result.total, included)
    if dropped:
        bundle.setdefault("entry", []).append({"resource": outcome(
            "not included, the access token does not allow reading them (SMART scopes): " + ", ".join(dropped),
            "suppressed", "warning"), "search": {"mode": "outcome"}})
    return fhir_response(bundle)


def _include_scope(resource_type: str) -> set[str] | None:
    """What ``_include`` may add of ``resource_type``: the read the caller's scopes grant on it (SMART App
    Launch 2.x: a resource is returned only under a scope that covers it), as :func:`authorize` answers for
    a read of that type: None (all), the Patient ids of a ``patient/`` grant, or the empty set when it
    refuses. An include the token may not read is left out, not a 403: the search itself is allowed, and
    the bundle says so in an OperationOutcome entry (search.mode ``outcome``, R4 search.html#errors)."""
    try:
        allowed = authorize(resource_type, "read")
    except HubError as err:
        if err.http_status != 403:
            raise
        return set()
    if resource_type == "Endpoint" and allowed is not None:
        return None  # not in the Patient compartment: a patient/Endpoint.r grant reads it, as GET /Endpoint does
    return allowed
