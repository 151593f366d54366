"""FHIR R4 ServiceRequest -> ``OrderCommand`` (mapping-reference §3.3, HL7 imaging-service-request IG ConceptMaps;
MWL keys of PS3.4 Table K.6-1). A registered ImagingStudy goes through here too (mappings.imaging_study_to_order).

Decisions: ``urgent`` and ``asap`` -> HIGH (MEDIUM stays for HL7 "T"); ``on-hold`` keeps the order but
removes its not-yet-started worklist items (order status HD, released by ``active``); ``draft`` and
non-order intents are refused (business rule); ``entered-in-error`` cancels like ``revoked`` (order status
ER). Without an ``urn:dicom:uid`` identifier the Study UID is a name-based 2.25 UID of the first
identifier (same request -> same study); Requested Procedure ID: identifier of the configured system,
else the accession, else a hash of the identifier (SH 16).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.domain.orders import OrderAction, OrderCommand, PatientIdentity, PatientRecord, ScheduledStep, StepStatus
from mappings.fhir_structure import check
from mappings.fhir_values import (
    DCM_SYSTEM,
    DICOM_UID_SYSTEM,
    V2_0203,
    FhirInputError,
    code_item,
    elem,
    fit,
    human_name_to_pn,
    issuer_item,
    parse_datetime,
    pn_elem,
    seq_elem,
    valid_uid,
)

RP_ID_SYSTEM = "urn:rishub:requested-procedure-id"
PRIORITY = {"routine": "ROUTINE", "urgent": "HIGH", "asap": "HIGH", "stat": "STAT"}
# ServiceRequest.status -> action, SPS status, ORC-1, ORC-5 (HL7 table 0038) kept as the order's status
STATUS = {
    "active": (OrderAction.CREATE, StepStatus.SCHEDULED, "NW", "SC"),
    "on-hold": (OrderAction.UPDATE, StepStatus.SCHEDULED, "HD", "HD"),
    "completed": (OrderAction.STATUS, StepStatus.COMPLETED, "SC", "CM"),
    "revoked": (OrderAction.CANCEL, StepStatus.CANCELED, "CA", "CA"),
    "entered-in-error": (OrderAction.CANCEL, StepStatus.CANCELED, "CA", "ER"),
}
ORDER_INTENTS = {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
# R4 servicerequest.html: status (request-status) and intent (request-intent) have required bindings
REQUEST_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
REQUEST_INTENT = {"proposal", "plan", "directive", "option", *ORDER_INTENTS}
_MODALITY = re.compile(r"[A-Z]{2,7}")
_NS = uuid.NAMESPACE_OID


@dataclass(frozen=True)
class FhirOrderPolicy:
    """The site's choices for FHIR orders (settings tables)."""

    modality_by_code: Mapping[str, str] = field(default_factory=dict)  # "code" or "system|code" -> Modality
    station_by_device: Mapping[str, str] = field(default_factory=dict)  # Device display/identifier -> AE
    station_by_modality: Mapping[str, str] = field(default_factory=dict)  # fallback Scheduled Station AE
    issuers: Mapping[str, str] = field(default_factory=dict)  # identifier system -> DICOM local namespace
    schemes: Mapping[str, str] = field(default_factory=dict)  # extra code system URI -> coding scheme
    patient_system: str = ""  # primary patient identifier system; "" = type MR, else the first
    rp_id_system: str = RP_ID_SYSTEM
    date_only_start_time: str = "000000"


def _type_code(ident: dict[str, Any]) -> str:
    for coding in (ident.get("type") or {}).get("coding") or []:
        if coding.get("system") in (V2_0203, None):
            return str(coding.get("code") or "")
    return ""


def _uid_value(value: str) -> str:
    return value[8:] if value.startswith("urn:oid:") else value


@dataclass
class _Ids:
    study_uid: str = ""
    accession: tuple[str, str] = ("", "")  # value, system
    placer: tuple[str, str] = ("", "")
    filler: tuple[str, str] = ("", "")
    rp_id: str = ""
    key: str = ""  # system|value of the identifier that names the request (derived UIDs)


def _identifiers(resource: dict[str, Any], policy: FhirOrderPolicy, rtype: str) -> _Ids:
    ids = _Ids()
    for n, ident in enumerate(resource.get("identifier") or []):
        where = f"{rtype}.identifier[{n}]"
        system, value = str(ident.get("system") or ""), str(ident.get("value") or "")
        kind = _type_code(ident)
        if system == DICOM_UID_SYSTEM:
            uid = _uid_value(value)
            if not valid_uid(uid):
                raise FhirInputError("value", "not a valid DICOM UID", f"{where}.value")
            ids.study_uid = ids.study_uid or uid
            continue
        if kind == "ACSN" and not ids.accession[0]:
            ids.accession = (fit(value, "SH", f"{where}.value"), system)
        elif kind == "PLAC" and not ids.placer[0]:
            ids.placer = (fit(value, "LO", f"{where}.value"), system)
        elif kind == "FILL" and not ids.filler[0]:
            ids.filler = (fit(value, "LO", f"{where}.value"), system)
        elif system == policy.rp_id_system and not ids.rp_id:
            ids.rp_id = fit(value, "SH", f"{where}.value")
        if value and not ids.key and kind in ("ACSN", "PLAC", "FILL", ""):
            ids.key = f"{system}|{value}"
    acc, plac = ids.accession, ids.placer
    ids.key = (f"{acc[1]}|{acc[0]}" if acc[0] else f"{plac[1]}|{plac[0]}" if plac[0] else ids.key)
    if not ids.study_uid:
        ids.study_uid = f"2.25.{uuid.uuid5(_NS, 'rishub:fhir:' + ids.key).int}" if ids.key else \
            f"2.25.{uuid.uuid4().int}"
    if not ids.rp_id:
        ids.rp_id = ids.accession[0] or hashlib.sha1(ids.study_uid.encode()).hexdigest()[:16].upper()
    return ids


def _contained(resource: dict[str, Any], ref: dict[str, Any] | None) -> dict[str, Any] | None:
    target = str((ref or {}).get("reference") or "")
    if target.startswith("#"):
        for item in resource.get("contained") or []:
            if item.get("id") == target[1:]:
                return item
    return None


def _universal(system: str) -> tuple[str, str]:
    """Identifier.system -> (Universal Entity ID, type) of the Issuer of Patient ID Qualifiers (0010,0024)."""
    return (system[8:], "ISO") if system.startswith("urn:oid:") else (system, "URI") if ":" in system else ("", "")


def patient_issuer(ident: dict[str, Any], policy: FhirOrderPolicy) -> str:
    """Issuer of Patient ID (0010,0021) of a Patient.identifier: the site table's namespace for its system, else
    ``assigner.display`` (the authority's namespace, HL7 CX-4.1, as the hub's Patient states it), else the OID of
    an ``urn:oid:`` system, else the system: the hub's Patient of an order maps back to the order's issuer."""
    system = str(ident.get("system") or "")
    assigner = str((ident.get("assigner") or {}).get("display") or "")
    return policy.issuers.get(system) or assigner or system.removeprefix("urn:oid:")


def patient_to_record(patient: dict[str, Any] | None, subject: dict[str, Any] | None,
                      policy: FhirOrderPolicy) -> PatientRecord:
    """Patient (validated by the caller) or a logical reference with an identifier -> patient module
    (mapping-reference §3.3)."""
    idents = (patient or {}).get("identifier") or ([subject["identifier"]] if (subject or {}).get("identifier")
                                                  else [])
    idents = [i for i in idents if i.get("value")]
    if not idents:
        raise FhirInputError("required", "the patient needs an identifier (Patient ID)", "ServiceRequest.subject")
    primary = next((i for i in idents if policy.patient_system and i.get("system") == policy.patient_system), None) \
        or next((i for i in idents if _type_code(i) == "MR"), None) or idents[0]
    system, pid = str(primary.get("system") or ""), fit(str(primary["value"]), "LO", "Patient.identifier.value")
    issuer = fit(patient_issuer(primary, policy), "LO", "Patient.identifier.system")
    attrs: dict[str, Any] = {"00100020": elem("LO", pid), "00100021": elem("LO", issuer)}
    universal, kind = _universal(system)
    if universal:
        attrs["00100024"] = seq_elem({"00400032": elem("UT", universal), "00400033": elem("CS", kind)})
    others = []
    for other in idents:
        if other is primary:
            continue
        others.append({"00100020": elem("LO", str(other["value"])[:64]),
                       "00100021": elem("LO", patient_issuer(other, policy)[:64])})
    if others:
        attrs["00101002"] = seq_elem(*others)
    if patient is not None:
        names = patient.get("name") or []
        name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
        attrs["00100010"] = pn_elem(fit(human_name_to_pn(name), "PN", "Patient.name") if name else "")
        birth = str(patient.get("birthDate") or "")
        attrs["00100030"] = elem("DA", parse_datetime(birth, "Patient.birthDate")[0] if len(birth) == 10 else "")
        sex = {"male": "M", "female": "F", "other": "O"}.get(str(patient.get("gender") or ""), "")
        attrs["00100040"] = elem("CS", sex)
    identity = PatientIdentity(pid, issuer, universal, kind, _type_code(primary))
    return PatientRecord(identity, attrs)


def _modality(resource: dict[str, Any], codings: list[dict[str, Any]], policy: FhirOrderPolicy) -> str:
    """Modality (0008,0060): a DCM coding in an extension, orderDetail or category, else the code table."""
    candidates: list[dict[str, Any]] = [e.get("valueCoding") or {} for e in resource.get("extension") or []]
    for key in ("orderDetail", "category"):
        for concept in resource.get(key) or []:
            candidates += concept.get("coding") or []
    for coding in candidates:
        code = str(coding.get("code") or "")
        if coding.get("system") == DCM_SYSTEM and _MODALITY.fullmatch(code):
            return code
    for coding in codings:
        code, system = str(coding.get("code") or ""), str(coding.get("system") or "")
        found = policy.modality_by_code.get(f"{system}|{code}") or policy.modality_by_code.get(code)
        if found:
            return found
    return ""


def _start(value: str, expression: str, policy: FhirOrderPolicy, now: datetime | None) -> tuple[str, str, str]:
    if value:
        date, time, offset = parse_datetime(value, expression)
        return date, time or policy.date_only_start_time, offset
    moment = now or datetime.now()  # dcm4chee-arc #209: no start -> now
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S"), ""


def _authored(value: str, offset: str) -> tuple[datetime, str, str]:
    """authoredOn -> (the instant as naive UTC, Issue Date (0040,2004), Issue Time (0040,2005)). DA/TM are in the
    data set's Timezone Offset From UTC (0008,0201) = ``offset``, else in the hub's local zone (mapping-reference
    3.2: DICOM times without an offset); a date alone is that date (UTC midnight for the instant)."""
    a_date, a_time, _ = parse_datetime(value, "ServiceRequest.authoredOn")
    if not a_time:
        return datetime.strptime(a_date, "%Y%m%d"), a_date, ""
    try:  # 9999-12-31T23:59:59-14:00 is past year 9999 in UTC
        moment = datetime.fromisoformat(value)
        local = moment.astimezone(datetime.strptime(offset, "%z").tzinfo if offset else None)
        instant = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise FhirInputError("value", "the date/time is out of range", "ServiceRequest.authoredOn") from None
    frac = a_time.partition(".")[2]
    return instant, local.strftime("%Y%m%d"), local.strftime("%H%M%S") + (f".{frac}" if frac else "")


def _display_of(resource: dict[str, Any], ref: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Reference -> (display or identifier value or contained name, the contained resource)."""
    inner = _contained(resource, ref)
    text = str(ref.get("display") or (ref.get("identifier") or {}).get("value") or "")
    if inner is not None and not text:
        names = inner.get("deviceName") or []
        text = str((names[0].get("name") if names else "") or ((inner.get("identifier") or [{}])[0].get("value"))
                   or "")
    return text, inner


def person_pn(resource: dict[str, Any], ref: dict[str, Any] | None, expression: str) -> str:
    """A Practitioner reference (display, identifier or contained name) -> DICOM PN, cut to its VR."""
    if not ref:
        return ""
    text, inner = _display_of(resource, ref)
    if inner is not None and inner.get("name"):
        text = human_name_to_pn(inner["name"][0])
    return fit(text, "PN", expression)


def service_request_to_order(resource: dict[str, Any], patient: dict[str, Any] | None = None,
                             policy: FhirOrderPolicy | None = None, *, now: datetime | None = None) -> OrderCommand:
    """One R4 ServiceRequest (one requested procedure, one scheduled step) -> ``OrderCommand``. ``patient`` is
    the subject's Patient resource when the caller resolved it; a contained one (``#id``) is found here."""
    policy = policy or FhirOrderPolicy()
    check(resource, "ServiceRequest")
    status, intent = str(resource.get("status")), str(resource.get("intent"))
    if status not in REQUEST_STATUS:  # required bindings: a code outside the value set is invalid (400)
        raise FhirInputError("code-invalid", f"{status!r} is not a request-status code", "ServiceRequest.status")
    if intent not in REQUEST_INTENT:
        raise FhirInputError("code-invalid", f"{intent!r} is not a request-intent code", "ServiceRequest.intent")
    if status not in STATUS:
        raise FhirInputError("business-rule", f"a ServiceRequest with status {status} is not scheduled",
                             "ServiceRequest.status")
    if intent not in ORDER_INTENTS:
        raise FhirInputError("business-rule", "only orders are scheduled", "ServiceRequest.intent")
    if resource.get("occurrenceTiming"):
        raise FhirInputError("not-supported", "use occurrenceDateTime or occurrencePeriod", "ServiceRequest.occurrence")
    action, step_status, control, order_status = STATUS[status]
    subject = resource.get("subject") or {}
    if patient is not None:  # a contained one was validated with the ServiceRequest
        check(patient, "Patient")
    record = patient_to_record(patient or _contained(resource, subject), subject, policy)
    ids = _identifiers(resource, policy, "ServiceRequest")
    code = resource.get("code") or {}
    codings = code.get("coding") or []
    text = str(code.get("text") or (codings[0].get("display") if codings else "") or "")
    occurrence = str(resource.get("occurrenceDateTime") or (resource.get("occurrencePeriod") or {}).get("start") or "")
    date, time, offset = _start(occurrence, "ServiceRequest.occurrence", policy, now)
    modality = _modality(resource, codings, policy)
    attrs: dict[str, Any] = {
        "0020000D": elem("UI", ids.study_uid),
        "00401001": elem("SH", ids.rp_id),
        "00321060": elem("LO", fit(text, "LO", "ServiceRequest.code.text")),
        "00321064": seq_elem(*(code_item(c, policy.schemes, f"ServiceRequest.code.coding[{n}]", text)
                               for n, c in enumerate(codings[:1]))),
        "00401003": elem("SH", PRIORITY.get(str(resource.get("priority") or ""), "")),
        "00080050": elem("SH", ids.accession[0]),
        "00402016": elem("LO", ids.placer[0]),
        "00402017": elem("LO", ids.filler[0]),
        "00321032": pn_elem(person_pn(resource, resource.get("requester"), "ServiceRequest.requester")),
        "00080090": {"vr": "PN"},
        "00081110": seq_elem(),
        "00081120": seq_elem(),
        "00380010": elem("LO", fit(str(((resource.get("encounter") or {}).get("identifier") or {}).get("value")
                                       or ""), "LO", "ServiceRequest.encounter")),
        "00380050": elem("LO"),
        "00403001": elem("LO"),
    }
    for tag, (value, system) in (("00080051", ids.accession), ("00400026", ids.placer), ("00400027", ids.filler)):
        item = issuer_item(system, policy.issuers) if value else None
        if item:
            attrs[tag] = seq_elem(item)
    if offset:
        attrs["00080201"] = elem("SH", offset)
    authored_at = None
    if resource.get("authoredOn"):
        authored_at, a_date, a_time = _authored(str(resource["authoredOn"]), offset)
        attrs["00402004"], attrs["00402005"] = elem("DA", a_date), elem("TM", a_time)
    reasons = resource.get("reasonCode") or []
    if reasons:
        first_reason = reasons[0]
        rcodings = first_reason.get("coding") or []
        reason_text = str(first_reason.get("text") or (rcodings[0].get("display") if rcodings else "") or "")
        attrs["00401002"] = elem("LO", fit(reason_text, "LO", "ServiceRequest.reasonCode.text"))
        if rcodings:
            attrs["0040100A"] = seq_elem(code_item(rcodings[0], policy.schemes, "ServiceRequest.reasonCode", ""))
    notes = [str(n.get("text") or "") for n in resource.get("note") or []]
    if any(notes):
        attrs["00401400"] = elem("LT", fit("\n".join(t for t in notes if t), "LT", "ServiceRequest.note"))
    for tag, vr in (("00100010", "PN"), ("00100020", "LO"), ("00100030", "DA"), ("00100040", "CS")):
        if tag not in record.attrs:
            attrs[tag] = {"vr": vr}
    step = _step(resource, ids, modality, policy, step_status, (date, time))
    return OrderCommand(
        action=action, control=control, order_status=order_status, patient=record, study_uid=ids.study_uid,
        accession_number=ids.accession[0], requested_procedure_id=ids.rp_id, placer_order=ids.placer[0],
        filler_order=ids.filler[0], attrs=attrs, steps=[] if status == "on-hold" else [step],
        specific_character_set="ISO_IR 192",
        reason="entered-in-error" if status == "entered-in-error" else "", authored_at=authored_at)


def _step(resource: dict[str, Any], ids: _Ids, modality: str, policy: FhirOrderPolicy, status: StepStatus,
          start: tuple[str, str]) -> ScheduledStep:
    """The Scheduled Procedure Step Sequence item: performer Device -> station AE/name, Practitioner ->
    performing physician, orderDetail -> protocol codes/description, location -> SPS location."""
    station = station_name = physician = ""
    for n, ref in enumerate(resource.get("performer") or []):
        kind = str(ref.get("type") or str(ref.get("reference") or "").split("/")[0])
        inner = _contained(resource, ref)
        kind = kind if kind and not kind.startswith("#") else str((inner or {}).get("resourceType") or "")
        if kind == "Device" and not station:
            text, _ = _display_of(resource, ref)
            station = policy.station_by_device.get(text) or text
            station = fit(station, "AE", f"ServiceRequest.performer[{n}]")
            station_name = text[:16]
        elif kind in ("Practitioner", "PractitionerRole") and not physician:
            physician = person_pn(resource, ref, f"ServiceRequest.performer[{n}]")
    station = station or policy.station_by_modality.get(modality, "")
    details = [c for d in resource.get("orderDetail") or [] for c in d.get("coding") or []
               if not (c.get("system") == DCM_SYSTEM and _MODALITY.fullmatch(str(c.get("code") or "")))]
    detail_text = next((str(d.get("text")) for d in resource.get("orderDetail") or [] if d.get("text")), "")
    codings = (resource.get("code") or {}).get("coding") or [{}]
    description = detail_text or (str(details[0].get("display") or "") if details else "") or \
        str((resource.get("code") or {}).get("text") or codings[0].get("display") or "")
    locations = [str(c.get("text") or ((c.get("coding") or [{}])[0].get("display")) or "")
                 for c in resource.get("locationCode") or []]
    locations += [str(r.get("display") or "") for r in resource.get("locationReference") or []]
    location = next((loc for loc in locations if loc), "")
    attrs = {
        "00400001": elem("AE", station),
        "00400002": elem("DA", start[0]),
        "00400003": elem("TM", start[1]),
        "00080060": elem("CS", modality),
        "00400006": pn_elem(physician),
        "00400007": elem("LO", description[:64]),
        "00400008": seq_elem(*(code_item(c, policy.schemes, "ServiceRequest.orderDetail") for c in details)),
        "00400009": elem("SH", ids.rp_id),
        "00400010": elem("SH", station_name),
        "00400011": elem("SH", fit(location, "SH", "ServiceRequest.location")),
        "00400012": elem("LO"),
        "00321070": elem("LO"),
        "00400020": elem("CS", status.value),
    }
    return ScheduledStep(sps_id=ids.rp_id, status=status, modality=modality, station_aet=station,
                         start_date=start[0], start_time=start[1], attrs=attrs)


def parse_identifier_token(token: str) -> tuple[str | None, str]:
    """FHIR token search value ``[system|]value`` -> (system or None for any, value); ``|value`` = no system."""
    if "|" not in token:
        return None, token
    system, value = token.split("|", 1)
    return system, value
