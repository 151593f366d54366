"""An order row (``orders`` + its ``scheduled_steps``, DICOM JSON attributes) -> FHIR R4 ServiceRequest
(mapping-reference §3.3 read backwards; status from the step statuses per §2.4).

``meta.versionId`` is the order's version counter, ``meta.lastUpdated`` its ``updated_at`` (UTC), ``authoredOn``
its ``authored_at`` instant (UTC, ``Z``). Priority
HIGH reads back as ``urgent`` (``asap`` is not kept apart); a code of a local scheme keeps its designator
as ``urn:rishub:scheme:<designator>``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hub.domain.orders import FINAL_STEP_STATES, StepStatus
from mappings.fhir_to_order import RP_ID_SYSTEM
from mappings.fhir_values import (
    DCM_SYSTEM,
    DICOM_UID_SYSTEM,
    SYSTEMS,
    V2_0203,
    first,
    system_of,
    to_fhir_datetime,
)

PRIORITY = {"ROUTINE": "routine", "LOW": "routine", "MEDIUM": "urgent", "HIGH": "urgent", "STAT": "stat"}
_FINAL = {s.value for s in FINAL_STEP_STATES}


def service_request_status(order_status: str, step_statuses: list[str]) -> str:
    """§2.4: a step still to do -> active; all done -> completed if one completed, else revoked (cancelled or
    discontinued); order status ER -> entered-in-error, HD -> on-hold; no steps -> the order's own status."""
    if order_status == "ER":
        return "entered-in-error"
    if order_status == "HD":
        return "on-hold"
    if any(s not in _FINAL for s in step_statuses):
        return "active"
    if not step_statuses:
        return {"CA": "revoked", "DC": "revoked", "CM": "completed"}.get(order_status, "active")
    return "completed" if StepStatus.COMPLETED.value in step_statuses else "revoked"


def instant(moment: datetime) -> str:
    """A naive UTC datetime -> FHIR instant."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json(value: Any) -> dict[str, Any]:  # noqa: ANN401 - a column: text or already parsed
    return json.loads(value) if isinstance(value, str | bytes) else dict(value or {})


def _coding(item: dict[str, Any]) -> dict[str, Any]:
    scheme = str(first(item, "00080102"))
    system = SYSTEMS.get(scheme) or (f"urn:rishub:scheme:{scheme}" if scheme else "")
    out = {"system": system, "code": str(first(item, "00080100")), "display": str(first(item, "00080104"))}
    return {k: v for k, v in out.items() if v}


def _items(attrs: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    return [i for i in (attrs.get(tag) or {}).get("Value") or [] if isinstance(i, dict)]


def _identifier(kind: str, value: str, issuer: list[dict[str, Any]], issuers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": {"coding": [{"system": V2_0203, "code": kind}]}}
    system = system_of(issuer[0] if issuer else None, issuers)
    if system:
        out["system"] = system
    out["value"] = value
    return out


def authored_on(order: Mapping[str, Any], attrs: dict[str, Any]) -> str:
    """ServiceRequest.authoredOn: the order's ``authored_at`` instant (UTC) as ``...Z`` (seconds, or milliseconds
    when it has a fraction); an authoredOn given as a date alone (Issue Date (0040,2004) without a time) reads
    back as that date. Rows without ``authored_at`` fall back to the receipt time (``created_at``)."""
    moment = order.get("authored_at") or order["created_at"]
    issued, time = str(first(attrs, "00402004")), str(first(attrs, "00402005"))
    if issued and not time and moment.strftime("%Y%m%d%H%M%S%f") == issued + "000000000000":
        return f"{issued[:4]}-{issued[4:6]}-{issued[6:8]}"
    return instant(moment) if moment.microsecond else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def order_identifiers(order: Mapping[str, Any], attrs: dict[str, Any],
                      issuers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """ACSN / PLAC / FILL identifiers (v2-0203), the Requested Procedure ID and the Study UID (urn:dicom:uid)."""
    issuers = issuers or {}
    out = []
    for kind, column, tag in (("ACSN", "accession_number", "00080051"), ("PLAC", "placer_order", "00400026"),
                              ("FILL", "filler_order", "00400027")):
        if order[column]:
            out.append(_identifier(kind, str(order[column]), _items(attrs, tag), issuers))
    if order["requested_procedure_id"]:
        out.append({"system": RP_ID_SYSTEM, "value": str(order["requested_procedure_id"])})
    out.append({"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{order['study_uid']}"})
    return out


def order_to_service_request(order: Mapping[str, Any], steps: list[Mapping[str, Any]], patient_ref: str,
                             issuers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ServiceRequest of one order; ``patient_ref`` is the subject reference (``Patient/<id>``)."""
    attrs = _json(order["attrs"])
    step_attrs = [_json(s["attrs"]) for s in steps]
    offset = str(first(attrs, "00080201"))
    res: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(order["pk"]),
        "meta": {"versionId": str(order.get("version") or 1), "lastUpdated": instant(order["updated_at"])},
        "identifier": order_identifiers(order, attrs, issuers),
        "status": service_request_status(str(order["status"]), [str(s["status"]) for s in steps]),
        "intent": "order",
    }
    modalities = sorted({str(s["modality"]) for s in steps if s["modality"]})
    if modalities:
        res["category"] = [{"coding": [{"system": DCM_SYSTEM, "code": m}]} for m in modalities]
    priority = PRIORITY.get(str(first(attrs, "00401003")))
    if priority:
        res["priority"] = priority
    codes = [_coding(i) for i in _items(attrs, "00321064")]
    text = str(first(attrs, "00321060"))
    if codes or text:
        res["code"] = {k: v for k, v in (("coding", codes), ("text", text)) if v}
    details = [_coding(i) for a in step_attrs for i in _items(a, "00400008")]
    detail_text = next((str(first(a, "00400007")) for a in step_attrs if first(a, "00400007")), "")
    if details or (detail_text and detail_text != text):
        res["orderDetail"] = [{k: v for k, v in (("coding", details), ("text", detail_text)) if v}]
    res["subject"] = {"reference": patient_ref}
    if steps:
        when = to_fhir_datetime(str(steps[0]["start_date"]), str(steps[0]["start_time"]), offset)
        if when:
            res["occurrenceDateTime"] = when
    res["authoredOn"] = authored_on(order, attrs)
    requester = str(first(attrs, "00321032"))
    if requester:
        res["requester"] = {"type": "Practitioner", "display": requester}
    performers = []
    for a in step_attrs:
        aet = str(first(a, "00400001"))
        if aet:
            performers.append({"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": aet},
                               "display": str(first(a, "00400010")) or aet})
        who = str(first(a, "00400006"))
        if who:
            performers.append({"type": "Practitioner", "display": who})
    if performers:
        res["performer"] = performers
    locations = sorted({str(first(a, "00400011")) for a in step_attrs if first(a, "00400011")})
    if locations:
        res["locationCode"] = [{"text": loc} for loc in locations]
    reason_codes = [_coding(i) for i in _items(attrs, "0040100A")]
    reason = str(first(attrs, "00401002"))
    if reason or reason_codes:
        res["reasonCode"] = [{k: v for k, v in (("coding", reason_codes), ("text", reason)) if v}]
    note = str(first(attrs, "00401400"))
    if note:
        res["note"] = [{"text": note}]
    return res


def etag(version: int | str) -> str:
    """The weak ETag of a version (FHIR RESTful API: ``W/"<versionId>"``)."""
    return f'W/"{version}"'


def parse_etag(value: str) -> str:
    """``W/"3"`` / ``"3"`` / ``3`` -> ``"3"``."""
    value = value.strip()
    value = value[2:] if value.startswith("W/") else value
    return value.strip('"')


def etag_matches(header: str, version: int | str) -> bool:
    """``If-Match`` (RFC 9110 13.1.1) against the current version: ``*``, or a comma list of entity tags one of
    which names it. Compared weakly: FHIR's version ETags are weak (``W/"3"``) and clients send them back as
    they got them, or as ``"3"``."""
    tags = [t.strip() for t in header.split(",") if t.strip()]
    return "*" in tags or any(parse_etag(t) == str(version) for t in tags)
