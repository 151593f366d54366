"""FHIR R4 ImagingStudy read and search (http://hl7.org/fhir/R4/imagingstudy.html#search) over the
archive (status ``available``) and the orders without images (``registered`` / ``cancelled``)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response

from hub.services.fhir import PatientCriteria, PatientKey, StudyCriteria
from interfaces.http.fhir.common import (
    FhirError,
    ResourceSupport,
    Search,
    SearchParam,
    authorize,
    bp,
    fhir_response,
    hub,
    not_found,
    parse_date,
    parse_reference,
    parse_search,
    parse_token,
    register,
    resource_response,
    searchset,
)
from interfaces.http.fhir.endpoint import current_endpoint
from mappings.dicom_to_fhir import DICOM_UID, ENDPOINT_ID
from mappings.dicom_to_fhir_values import DCM

SORTS = {"started", "_lastUpdated", "_id"}
# ServiceRequest id -> Study Instance UIDs it requested: filled by the ServiceRequest provider, so
# that ``basedon=ServiceRequest/<id>`` can be answered; without one only ``basedon:identifier`` works.
SERVICE_REQUEST_STUDIES: list[Callable[[str], list[str] | None]] = []

register(ResourceSupport(
    "ImagingStudy", ["read", "search-type"],
    params=[
        SearchParam("_id", "token", "ImagingStudy id"),
        SearchParam("_lastUpdated", "date", "meta.lastUpdated (UTC), with prefixes"),
        SearchParam("patient", "reference", "Patient/<id>; :identifier takes the Patient ID"),
        SearchParam("subject", "reference", "same as patient (only Patient subjects exist)"),
        SearchParam("identifier", "token",
                    "urn:dicom:uid|urn:oid:<Study Instance UID>, or an Accession Number (any system)"),
        SearchParam("started", "date", "Study Date/Time (orders: a scheduled step's start); eq ne lt gt le ge sa eb"),
        SearchParam("modality", "token", f"{DCM}|<code> (any series' modality; orders: a step's modality)"),
        SearchParam("status", "token", "available (stored), registered or cancelled (orders without images)"),
        SearchParam("basedon", "reference", "basedon:identifier = Accession, placer or filler order number"),
        SearchParam("endpoint", "reference", f"Endpoint/{ENDPOINT_ID}, which every ImagingStudy references"),
    ],
    includes=["ImagingStudy:subject", "ImagingStudy:patient", "ImagingStudy:endpoint"],
    documentation=("Ids: the Orthanc study id for stored studies, o-<order> for orders without images (such an "
                   "id reads as the stored study once images arrive). _sort: started, _lastUpdated, _id "
                   "(default -started). Paging with _count (max 1000) and _offset."),
))


def _patient_keys(s: Search) -> list[list[PatientKey]]:
    groups = []
    for name in ("patient", "subject"):
        for modifier, values in s.params.get(name, []):
            keys = []
            for v in values:
                if modifier == "identifier":
                    _, code = parse_token(v)
                    ids = [p["id"] for p in hub().fhir.search_patients(
                        PatientCriteria(identifiers=[[code]]), 0, 100).resources]
                else:
                    rid = parse_reference(v, "Patient")
                    ids = [rid] if rid else []
                for rid in ids:
                    keys += hub().fhir.patient_keys(rid)
            groups.append(keys)
    return groups


def criteria(s: Search) -> StudyCriteria:
    """The search parameters as the store's criteria (AND of OR groups)."""
    c = StudyCriteria(ids=s.values("_id"), patients=_patient_keys(s))
    for values in s.values("identifier"):
        group = []
        for v in values:
            system, code = parse_token(v)
            if system == DICOM_UID or code.startswith("urn:oid:"):
                group.append(("uid", code.removeprefix("urn:oid:")))
            else:
                group.append(("accession", code))
        c.identifiers.append(group)
    for name, target in (("started", c.started), ("_lastUpdated", c.last_updated)):
        for values in s.values(name):
            if len(values) != 1:
                raise FhirError(400, f"{name} takes one date per parameter (repeat it for a range)", "invalid")
            target.append(parse_date(values[0], hub().fhir.tz, utc=name == "_lastUpdated"))
    for values in s.values("modality"):
        c.modalities.append([code for system, code in map(parse_token, values) if system in (None, "", DCM)])
    c.statuses = [[parse_token(v)[1] for v in values] for values in s.values("status")]
    for modifier, values in s.params.get("basedon", []):
        if modifier == "identifier":
            c.based_on.append([parse_token(v)[1] for v in values])
            continue
        uids: list[tuple[str, str]] = []
        for v in values:
            rid = parse_reference(v, "ServiceRequest")
            found = [r(rid) for r in SERVICE_REQUEST_STUDIES] if rid else []
            if rid and not SERVICE_REQUEST_STUDIES:
                raise FhirError(400, "basedon by reference needs the ServiceRequest provider; "
                                "use basedon:identifier=<accession>", "not-supported")
            uids += [("uid", u) for f in found for u in (f or [])]
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
    result = hub().fhir.search_imaging_studies(c, s.sort or [("started", True)], s.offset, s.count, subject)
    included = result.included
    if "ImagingStudy:endpoint" in s.includes and result.resources:
        included = [*included, current_endpoint()]
    return fhir_response(searchset("ImagingStudy", s, result.resources, result.total, included))

