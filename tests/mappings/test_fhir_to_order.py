"""Golden tests of the FHIR R4 ServiceRequest <-> order mappings (mapping-reference §3.3, §2.4),
with the emitted ServiceRequest checked by the R4B models and by FHIR.js (R4)."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from hub.domain.orders import OrderAction, StepStatus
from mappings.fhir_to_order import FhirOrderPolicy, parse_identifier_token, service_request_to_order
from mappings.fhir_values import FhirInputError, date_range, parse_datetime, to_fhir_datetime
from mappings.hl7_values import value_of
from mappings.order_to_fhir import (
    etag,
    etag_matches,
    order_to_service_request,
    parse_etag,
    service_request_status,
)

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
NOW = datetime(2030, 5, 6, 7, 8, 9)


def ident(kind: str, system: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": V2, "code": kind}]}, "system": system, "value": value}


SR: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "status": "active",
    "intent": "order",
    "identifier": [ident("ACSN", "urn:oid:1.2.3.4", "ACC100"), ident("PLAC", "http://ris.example/placer", "PL-7"),
                   ident("FILL", "urn:oid:1.2.3.5", "FI-9")],
    "contained": [{"resourceType": "Patient", "id": "p", "identifier": [
        {"type": {"coding": [{"system": V2, "code": "MR"}]}, "system": "urn:oid:1.2.3", "value": "PID1"},
        {"system": "http://national.example/id", "value": "N-55"}],
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}], "birthDate": "1970-02-03",
        "gender": "female"},
        {"resourceType": "Device", "id": "d", "deviceName": [{"name": "CT_ROOM1", "type": "user-friendly-name"}]}],
    "subject": {"reference": "#p"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}],
             "text": "CT chest without contrast"},
    "orderDetail": [{"coding": [{"system": "http://snomed.info/sct", "code": "169070004", "display": "CT of chest"}]}],
    "occurrenceDateTime": "2030-01-02T08:30:00+01:00",
    "authoredOn": "2029-12-30T10:00:00+01:00",
    "priority": "urgent",
    "performer": [{"reference": "#d"}, {"type": "Practitioner", "display": "Tech^Tom"}],
    "requester": {"display": "Referrer^Rita"},
    "locationCode": [{"text": "Room 1"}],
    "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "233604007", "display": "Pneumonia"}]}],
    "note": [{"text": "bring prior CT"}],
}
POLICY = FhirOrderPolicy(modality_by_code={"http://loinc.org|24627-2": "CT"},
                         station_by_device={"CT_ROOM1": "CT1"})


def v(attrs: dict, tag: str) -> Any:
    return value_of(attrs, tag)


def test_service_request_to_order_golden():
    cmd = service_request_to_order(copy.deepcopy(SR), policy=POLICY)
    assert (cmd.action, cmd.control, cmd.order_status) == (OrderAction.CREATE, "NW", "SC")
    assert (cmd.accession_number, cmd.placer_order, cmd.filler_order, cmd.requested_procedure_id) == \
        ("ACC100", "PL-7", "FI-9", "ACC100")
    # deterministic 2.25 UID from the ACSN identifier: the same request maps to the same study
    assert cmd.study_uid.startswith("2.25.") and cmd.study_uid == service_request_to_order(SR, policy=POLICY).study_uid
    p = cmd.patient
    assert (p.identity.patient_id, p.identity.issuer, p.identity.universal_id, p.identity.id_type) == \
        ("PID1", "1.2.3", "1.2.3", "MR")
    assert (v(p.attrs, "00100010"), v(p.attrs, "00100030"), v(p.attrs, "00100040")) == ("Doe^Jane^Q", "19700203", "F")
    other = p.attrs["00101002"]["Value"][0]
    assert (v(other, "00100020"), v(other, "00100021")) == ("N-55", "http://national.example/id")
    a = cmd.attrs
    assert v(a, "0020000D") == cmd.study_uid
    assert (v(a, "00080050"), v(a, "00401001"), v(a, "00401003")) == ("ACC100", "ACC100", "HIGH")
    assert a["00080051"]["Value"][0] == {"00400032": {"vr": "UT", "Value": ["1.2.3.4"]},
                                         "00400033": {"vr": "CS", "Value": ["ISO"]}}
    assert v(a["00400026"]["Value"][0], "00400031") == "http://ris.example/placer"
    assert (v(a, "00402016"), v(a, "00402017")) == ("PL-7", "FI-9")
    code = a["00321064"]["Value"][0]
    assert (v(code, "00080100"), v(code, "00080102"), v(code, "00080104")) == ("24627-2", "LN", "CT Chest")
    assert v(a, "00321060") == "CT chest without contrast"
    assert (v(a, "00080201"), v(a, "00402004"), v(a, "00402005")) == ("+0100", "20291230", "100000")
    assert v(a, "00321032") == "Referrer^Rita"
    assert v(a["0040100A"]["Value"][0], "00080102") == "SCT" and v(a, "00401002") == "Pneumonia"
    assert v(a, "00401400") == "bring prior CT"
    (step,) = cmd.steps
    assert (step.sps_id, step.status, step.modality, step.station_aet, step.start_date, step.start_time) == \
        ("ACC100", StepStatus.SCHEDULED, "CT", "CT1", "20300102", "083000")
    s = step.attrs
    assert (v(s, "00400001"), v(s, "00400010"), v(s, "00400006"), v(s, "00400011")) == \
        ("CT1", "CT_ROOM1", "Tech^Tom", "Room 1")
    assert v(s, "00400007") == "CT of chest" and v(s["00400008"]["Value"][0], "00080102") == "SCT"
    assert v(s, "00400020") == "SCHEDULED"


@pytest.mark.parametrize(("status", "action", "step", "order_status", "steps"), [
    ("revoked", OrderAction.CANCEL, StepStatus.CANCELED, "CA", 1),
    ("completed", OrderAction.STATUS, StepStatus.COMPLETED, "CM", 1),
    ("entered-in-error", OrderAction.CANCEL, StepStatus.CANCELED, "ER", 1),
    ("on-hold", OrderAction.UPDATE, StepStatus.SCHEDULED, "HD", 0),
])
def test_status_mapping(status: str, action: OrderAction, step: StepStatus, order_status: str, steps: int):
    cmd = service_request_to_order({**SR, "status": status}, policy=POLICY)
    assert (cmd.action, cmd.order_status, len(cmd.steps)) == (action, order_status, steps)
    assert all(s.status is step for s in cmd.steps)


def test_dicom_uid_identifier_modality_extension_priority_and_device_identifier():
    res = {**SR, "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.99.1"},
                                {"system": "urn:rishub:requested-procedure-id", "value": "RP-1"}],
           "priority": "stat", "category": [{"coding": [{"system": DCM, "code": "MR"}]}],
           "performer": [{"type": "Device", "identifier": {"value": "MR_A"}}], "orderDetail": []}
    cmd = service_request_to_order(res, policy=POLICY)
    assert (cmd.study_uid, cmd.requested_procedure_id, cmd.accession_number) == ("1.2.840.99.1", "RP-1", "")
    assert (cmd.steps[0].modality, cmd.steps[0].station_aet, v(cmd.attrs, "00401003")) == ("MR", "MR_A", "STAT")
    assert v(cmd.steps[0].attrs, "00400007") == "CT chest without contrast"


def test_patient_given_by_identifier_or_resource_and_date_only_start():
    res = {k: val for k, val in SR.items() if k != "contained"}
    res |= {"subject": {"identifier": {"system": "urn:oid:1.2.3", "value": "PID2"}},
            "occurrenceDateTime": "2030-01-02", "performer": []}
    cmd = service_request_to_order(res, policy=POLICY)
    assert cmd.patient.identity.patient_id == "PID2" and cmd.attrs["00100010"] == {"vr": "PN"}
    assert (cmd.steps[0].start_date, cmd.steps[0].start_time, cmd.steps[0].station_aet) == ("20300102", "000000", "")
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "PID3"}],
               "name": [{"family": "Roe", "given": ["Ann"]}]}
    cmd = service_request_to_order({**res, "subject": {"reference": "Patient/x"}}, patient, POLICY)
    assert (cmd.patient.identity.patient_id, v(cmd.patient.attrs, "00100010")) == ("PID3", "Roe^Ann")
    no_start = {k: val for k, val in res.items() if k != "occurrenceDateTime"}
    cmd = service_request_to_order(no_start, policy=POLICY, now=NOW)
    assert (cmd.steps[0].start_date, cmd.steps[0].start_time) == ("20300506", "070809")


@pytest.mark.parametrize(("change", "code", "expression"), [
    ({"bogus": 1}, "invalid", "ServiceRequest.bogus"),
    ({"status": "draft"}, "business-rule", "ServiceRequest.status"),
    ({"intent": "proposal"}, "business-rule", "ServiceRequest.intent"),
    # required bindings (R4 request-status, request-intent): a code outside them is invalid, not a rule
    ({"status": "bogus"}, "code-invalid", "ServiceRequest.status"),
    ({"intent": "bogus"}, "code-invalid", "ServiceRequest.intent"),
    ({"occurrenceDateTime": "2030-01-02T08:30:00"}, "invalid", "ServiceRequest.occurrenceDateTime"),
    ({"occurrenceDateTime": "2030-01"}, "value", "ServiceRequest.occurrence"),
    ({"subject": {"reference": "Patient/unknown"}}, "required", "ServiceRequest.subject"),
    ({"identifier": [ident("ACSN", "", "X" * 17)]}, "value", "ServiceRequest.identifier[0].value"),
    ({"identifier": [{"system": "urn:dicom:uid", "value": "1.02.3"}]}, "value", "ServiceRequest.identifier[0].value"),
])
def test_invalid_resources(change: dict, code: str, expression: str):
    with pytest.raises(FhirInputError) as exc:
        service_request_to_order({**SR, **change}, policy=POLICY)
    assert (exc.value.code, exc.value.expression) == (code, expression)


def order_row(cmd: Any, status: str = "SC", version: int = 3) -> tuple[dict, list[dict]]:
    order = {"pk": 42, "study_uid": cmd.study_uid, "accession_number": cmd.accession_number,
             "requested_procedure_id": cmd.requested_procedure_id, "placer_order": cmd.placer_order,
             "filler_order": cmd.filler_order, "patient_id": cmd.patient.identity.patient_id, "status": status,
             "issuer_of_patient_id": cmd.patient.identity.issuer, "authored_at": cmd.authored_at,
             "attrs": json.dumps(cmd.attrs), "patient_attrs": json.dumps(cmd.patient.attrs), "version": version,
             "created_at": datetime(2030, 1, 1, 12, 0, 0, 250000), "updated_at": datetime(2030, 1, 1, 12, 5, 0)}
    steps = [{"sps_id": s.sps_id, "status": s.status.value, "modality": s.modality, "start_date": s.start_date,
              "start_time": s.start_time, "attrs": json.dumps(s.attrs)} for s in cmd.steps]
    return order, steps


@pytest.fixture(scope="module")
def r4():  # noqa: ANN201
    from tests.fhir_validator import R4Validator

    try:
        validator = R4Validator()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield validator
    validator.close()


def test_order_to_service_request_golden_and_round_trip(r4):
    cmd = service_request_to_order(SR, policy=POLICY)
    res = order_to_service_request(*order_row(cmd), "Patient/abc")
    ServiceRequest.model_validate(res)
    r4.check(res)
    assert res["id"] == "42" and res["meta"] == {"versionId": "3", "lastUpdated": "2030-01-01T12:05:00.000Z"}
    assert (res["status"], res["intent"], res["priority"], res["subject"]) == \
        ("active", "order", "urgent", {"reference": "Patient/abc"})
    assert res["identifier"] == [
        ident("ACSN", "urn:oid:1.2.3.4", "ACC100"), ident("PLAC", "http://ris.example/placer", "PL-7"),
        ident("FILL", "urn:oid:1.2.3.5", "FI-9"), {"system": "urn:rishub:requested-procedure-id", "value": "ACC100"},
        {"system": "urn:dicom:uid", "value": f"urn:oid:{cmd.study_uid}"}]
    assert res["code"] == {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}],
                           "text": "CT chest without contrast"}
    assert res["category"] == [{"coding": [{"system": DCM, "code": "CT"}]}]
    assert res["occurrenceDateTime"] == "2030-01-02T08:30:00+01:00"
    assert res["authoredOn"] == "2029-12-30T09:00:00Z"  # the instant, in UTC
    assert res["performer"] == [{"type": "Device", "identifier": {"system": "urn:dicom:ae", "value": "CT1"},
                                 "display": "CT_ROOM1"}, {"type": "Practitioner", "display": "Tech^Tom"}]
    assert res["requester"] == {"type": "Practitioner", "display": "Referrer^Rita"}
    assert res["locationCode"] == [{"text": "Room 1"}] and res["note"] == [{"text": "bring prior CT"}]
    assert res["orderDetail"][0]["coding"][0]["code"] == "169070004"
    # what we emit maps back to the same order (identifiers, study, schedule)
    again = service_request_to_order({**res, "subject": {"identifier": {"system": "urn:oid:1.2.3", "value": "PID1"}}})
    assert (again.study_uid, again.accession_number, again.placer_order, again.steps[0].start_date,
            again.steps[0].start_time, again.steps[0].modality) == \
        (cmd.study_uid, "ACC100", "PL-7", "20300102", "083000", "CT")
    assert again.attrs["00080051"] == cmd.attrs["00080051"]


def test_status_from_steps_per_2_4(r4):
    assert service_request_status("SC", ["SCHEDULED"]) == "active"
    assert service_request_status("SC", ["STARTED"]) == "active"
    assert service_request_status("CM", ["COMPLETED"]) == "completed"
    assert service_request_status("CA", ["CANCELED"]) == "revoked"
    assert service_request_status("DC", ["DISCONTINUED"]) == "revoked"
    assert service_request_status("ER", ["CANCELED"]) == "entered-in-error"
    assert service_request_status("HD", []) == "on-hold"
    assert service_request_status("CA", []) == "revoked"
    cmd = service_request_to_order({**SR, "status": "revoked"}, policy=POLICY)
    order, steps = order_row(cmd, "CA")
    res = order_to_service_request(order, steps, "Patient/abc")
    r4.check(res)
    assert res["status"] == "revoked" and res["authoredOn"] == "2029-12-30T09:00:00Z"
    order["attrs"] = json.dumps({k: val for k, val in cmd.attrs.items() if k not in ("00402004", "00080201")})
    order["authored_at"] = None  # a row without it: the receipt time
    res = order_to_service_request(order, steps, "Patient/abc")
    assert res["authoredOn"] == "2030-01-01T12:00:00.250Z" and res["occurrenceDateTime"] == "2030-01-02"
    r4.check(res)


def test_values():
    assert parse_datetime("2030-01-02T08:30:15.25-05:00", "x") == ("20300102", "083015.25", "-0500")
    assert parse_datetime("2030-01-02", "x") == ("20300102", "", "")
    assert to_fhir_datetime("20300102", "0830", "+0100") == "2030-01-02T08:30:00+01:00"
    assert date_range("2030-01-02T10:00:00+02:00") == (datetime(2030, 1, 2, 8), datetime(2030, 1, 2, 8, 0, 1))
    assert date_range("2030-12") == (datetime(2030, 12, 1), datetime(2031, 1, 1))
    assert parse_identifier_token("urn:oid:1.2|A") == ("urn:oid:1.2", "A")
    assert parse_identifier_token("A") == (None, "A") and parse_identifier_token("|A") == ("", "A")
    assert parse_etag(etag(7)) == "7" and parse_etag('"7"') == "7"
    assert etag_matches('W/"7"', 7) and etag_matches('"7"', "7") and etag_matches('W/"1", W/"7"', 7)
    assert etag_matches("*", 7) and not etag_matches('W/"6"', 7) and not etag_matches("", 7)
