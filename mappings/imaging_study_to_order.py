"""FHIR R4 ImagingStudy with status ``registered`` -> ``OrderCommand``: a pre-created study schedules its study
like a ServiceRequest (HL7 imaging-service-request IG; mapping-reference §3.3), through
:func:`mappings.fhir_to_order.service_request_to_order`, so both give the same worklist item."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.domain.orders import OrderCommand
from mappings.fhir_structure import check
from mappings.fhir_to_order import FhirOrderPolicy, person_pn, service_request_to_order
from mappings.fhir_values import DCM_SYSTEM, FhirInputError, pn_elem

IMAGING_STUDY_STATUS = {"registered": "active", "cancelled": "revoked", "entered-in-error": "entered-in-error"}


def imaging_study_to_order(resource: dict[str, Any], patient: dict[str, Any] | None = None,
                           policy: FhirOrderPolicy | None = None, *, now: datetime | None = None) -> OrderCommand:
    """An ImagingStudy pre-created with status ``registered`` (imaging-service-request IG) schedules its study
    like an order: identifier ``urn:dicom:uid`` = Study UID, ACSN = accession, modality, started -> SPS start,
    procedureCode, referrer; ``cancelled`` / ``entered-in-error`` cancel it."""
    check(resource, "ImagingStudy")
    status = str(resource.get("status"))
    if status not in ("registered", "available", "cancelled", "entered-in-error", "unknown"):  # required binding
        raise FhirInputError("code-invalid", f"{status!r} is not an imagingstudy-status code", "ImagingStudy.status")
    if status not in IMAGING_STUDY_STATUS:
        raise FhirInputError("business-rule", f"an ImagingStudy with status {status} is not an order",
                             "ImagingStudy.status")
    modalities = [m for m in resource.get("modality") or [] if m.get("code")]
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest", "status": IMAGING_STUDY_STATUS[status], "intent": "order",
        "identifier": resource.get("identifier") or [], "subject": resource.get("subject"),
        "contained": resource.get("contained") or [],
    }
    procedure = (resource.get("procedureCode") or [None])[0]
    if procedure:
        request["code"] = {**procedure, "text": procedure.get("text") or resource.get("description") or ""}
        request["code"] = {k: v for k, v in request["code"].items() if v}
    elif resource.get("description"):
        request["code"] = {"text": resource["description"]}
    if resource.get("started"):
        request["occurrenceDateTime"] = resource["started"]
    if modalities:
        request["category"] = [{"coding": [{"system": DCM_SYSTEM, "code": modalities[0]["code"]}]}]
    if resource.get("location"):
        request["locationReference"] = [resource["location"]]
    for key in ("reasonCode", "note"):
        if resource.get(key):
            request[key] = resource[key]
    try:
        cmd = service_request_to_order(request, patient, policy, now=now)
    except FhirInputError as err:
        err.expression = err.expression.replace("ServiceRequest.occurrence", "ImagingStudy.started").replace(
            "ServiceRequest", "ImagingStudy")
        raise
    if resource.get("referrer"):
        cmd.attrs["00080090"] = pn_elem(person_pn(resource, resource["referrer"], "ImagingStudy.referrer"))
    return cmd
