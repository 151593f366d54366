"""FHIR R4 Patient read and search (http://hl7.org/fhir/R4/patient.html#search) over the archive's
patients and those known from orders only; an identity retired by ADT^A40 reads as an inactive
Patient linked (``replaced-by``) to the survivor (mapping-reference 1.5)."""

from __future__ import annotations

from flask import Response

from hub.services.fhir import PatientCriteria
from interfaces.http.fhir.common import (
    ResourceSupport,
    SearchParam,
    authorize,
    bp,
    fhir_response,
    hub,
    not_found,
    register,
    resource_response,
)
from interfaces.http.fhir.search import (
    parse_date,
    parse_search,
    parse_token,
    searchset,
)
from mappings.dicom_to_index import normalize_name

GENDER = {"male": "M", "female": "F", "other": "O", "unknown": ""}

register(ResourceSupport(
    "Patient", ["read", "vread", "search-type"],
    params=[
        SearchParam("_id", "token", "Patient id"),
        SearchParam("identifier", "token", "any identifier shown: Patient ID (0010,0020), Other Patient IDs "
                                           "(0010,1002); system|value must match both, |value: no system"),
        SearchParam("name", "string", "any part of the name, starts-with, case and accent insensitive; "
                                      ":exact a whole part as written (case, accents), :contains anywhere",
                    ("exact", "contains")),
        SearchParam("birthdate", "date", "Patient's Birth Date, with prefixes"),
        SearchParam("gender", "token", "male | female | other | unknown"),
    ],
    documentation=("Ids: the Orthanc patient id (SHA-1 of the Patient ID) for stored patients, SHA-1 of "
                   "'PatientID|Issuer' in the same format for patients known from orders only. A Patient ID "
                   "merged away (ADT^A40) reads as active=false with link replaced-by the survivor."),
))


@bp.get("/Patient/<rid>")
def read_patient(rid: str) -> Response:
    allowed = authorize("Patient", "read")
    resource = hub().fhir.read_patient(rid)
    if resource is None or (allowed is not None and rid not in allowed):
        raise not_found("Patient", rid)
    return resource_response(resource)


@bp.get("/Patient")
def search_patient() -> Response:
    allowed = authorize("Patient", "search")
    s = parse_search("Patient", {"_id"})
    c = PatientCriteria(ids=s.values("_id"))
    for values in s.values("identifier"):
        c.identifiers.append([parse_token(v) for v in values])
    for modifier, values in s.params.get("name", []):
        c.names.append([(modifier, normalize_name(v) or "") for v in values])  # narrows in SQL, then:
        if modifier == "exact":  # the whole part, casing and accents included (search-modifier-code exact)
            c.exact_names.append(values)
    for values in s.values("birthdate"):  # a comma list is OR (search.html#combining), a repeat AND
        c.birthdate.append([parse_date(v, hub().fhir.tz) for v in values])
    for values in s.values("gender"):
        c.genders.append([GENDER.get(parse_token(v)[1], "?") for v in values])
    if allowed is not None:
        c.ids.append(sorted(allowed))
    result = hub().fhir.search_patients(c, s.offset, s.count, descending=any(desc for _, desc in s.sort[:1]))
    return fhir_response(searchset("Patient", s, result.resources, result.total, []))
