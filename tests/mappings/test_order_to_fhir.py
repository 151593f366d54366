"""Round trips of the order <-> FHIR mappings (issue 7): the Patient the hub renders for an order's patient
(``dicom_to_fhir.patient_from_attrs``) maps back to the same Patient ID and issuer, for HL7-made and FHIR-made
orders; authoredOn is kept as an instant (R4 ServiceRequest.authoredOn; HL7 ORC-9 Date/Time of Transaction)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from hub.domain.orders import OrderCommand
from mappings.dicom_to_fhir import patient_from_attrs
from mappings.fhir_to_order import FhirOrderPolicy, service_request_to_order
from mappings.hl7_message import parse_hl7
from mappings.hl7_to_order import hl7_to_mapped
from mappings.hl7_values import value_of
from mappings.order_to_fhir import order_to_service_request
from tests.hl7_samples import samples_dir

SAMPLES = samples_dir()
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SR: dict[str, Any] = {
    "resourceType": "ServiceRequest", "status": "active", "intent": "order",
    "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": "RT-1"}],
    "contained": [{"resourceType": "Patient", "id": "p",
                   "identifier": [{"system": "http://ris.example/mrn", "value": "URL-P1"}],
                   "name": [{"family": "Url", "given": ["Uma"]}]}],
    "subject": {"reference": "#p"},
    "occurrenceDateTime": "2031-02-03T09:45:00+01:00",
}


def hl7_order(name: str) -> OrderCommand:
    (cmd,) = hl7_to_mapped(parse_hl7((SAMPLES / name).read_bytes())).orders
    return cmd


def rendered_patient(cmd: OrderCommand) -> dict[str, Any]:
    """The Patient the read side serves for the order's patient (no archive patient)."""
    ident = cmd.patient.identity
    return patient_from_attrs("pid", ident.patient_id, ident.issuer, cmd.patient.attrs, datetime(2030, 1, 1))


def row(cmd: OrderCommand, created: datetime = datetime(2030, 1, 1, 12)) -> tuple[dict[str, Any], list[dict]]:
    order = {"pk": 7, "study_uid": cmd.study_uid, "accession_number": cmd.accession_number,
             "requested_procedure_id": cmd.requested_procedure_id, "placer_order": cmd.placer_order,
             "filler_order": cmd.filler_order, "patient_id": cmd.patient.identity.patient_id,
             "issuer_of_patient_id": cmd.patient.identity.issuer, "status": "SC", "attrs": json.dumps(cmd.attrs),
             "patient_attrs": json.dumps(cmd.patient.attrs), "version": 1, "created_at": created,
             "authored_at": cmd.authored_at or created, "updated_at": created}
    steps = [{"sps_id": s.sps_id, "status": s.status.value, "modality": s.modality, "start_date": s.start_date,
              "start_time": s.start_time, "attrs": json.dumps(s.attrs)} for s in cmd.steps]
    return order, steps


@pytest.mark.parametrize("name", ["01_orm_o01_nw_ct_v231.hl7", "04_omi_o23_nw_mr_two_sps_v251.hl7"])
def test_the_patient_of_an_hl7_order_maps_back_to_its_issuer(name: str):
    cmd = hl7_order(name)
    patient = rendered_patient(cmd)
    assert patient["identifier"][0]["system"].startswith("urn:oid:")  # the universal id, not the namespace
    res = order_to_service_request(*row(cmd), "Patient/pid")
    again = service_request_to_order(res, patient)
    assert (again.patient.identity.patient_id, again.patient.identity.issuer) == \
        (cmd.patient.identity.patient_id, cmd.patient.identity.issuer)  # e.g. 4711001, HOSP_A (not 2.999.1.1)
    assert again.patient.identity.universal_id == cmd.patient.identity.universal_id
    assert again.study_uid == cmd.study_uid and again.accession_number == cmd.accession_number


@pytest.mark.parametrize(("system", "issuers"), [
    ("http://ris.example/mrn", {}),  # a URL system: kept as the qualifier's URI, so the Patient states it
    ("urn:oid:2.999.8", {}),
    ("http://ris.example/mrn", {"http://ris.example/mrn": "RIS_MRN"}),  # the site table's namespace
])
def test_the_patient_of_a_fhir_order_maps_back_to_its_issuer(system: str, issuers: dict[str, str]):
    policy = FhirOrderPolicy(issuers=issuers)
    body = copy.deepcopy(SR)
    body["contained"][0]["identifier"][0]["system"] = system
    cmd = service_request_to_order(body, policy=policy)
    patient = rendered_patient(cmd)
    assert patient["identifier"][0]["system"] == system
    again = service_request_to_order({**order_to_service_request(*row(cmd), "Patient/pid")}, patient, policy)
    assert (again.patient.identity.patient_id, again.patient.identity.issuer) == \
        (cmd.patient.identity.patient_id, cmd.patient.identity.issuer)


def test_another_patient_stays_another_issuer():
    cmd = hl7_order("01_orm_o01_nw_ct_v231.hl7")
    patient = rendered_patient(cmd)
    patient["identifier"][0]["assigner"] = {"display": "HOSP_B"}
    again = service_request_to_order(order_to_service_request(*row(cmd), "Patient/pid"), patient)
    assert again.patient.identity.issuer == "HOSP_B"


def test_authored_on_is_an_instant():
    cmd = service_request_to_order({**SR, "authoredOn": "2031-01-01T10:00:00-05:00"})
    assert cmd.authored_at == datetime(2031, 1, 1, 15, 0)
    # Issue Date/Time of Imaging Service Request in the data set's offset (0008,0201) = that of the occurrence
    assert (value_of(cmd.attrs, "00080201"), value_of(cmd.attrs, "00402004"), value_of(cmd.attrs, "00402005")) == \
        ("+0100", "20310101", "160000")
    res = order_to_service_request(*row(cmd), "Patient/pid")
    assert res["authoredOn"] == "2031-01-01T15:00:00Z"
    assert service_request_to_order(res, rendered_patient(cmd)).authored_at == cmd.authored_at  # and back
    fraction = service_request_to_order({**SR, "authoredOn": "2031-01-01T10:00:00.25+02:00"})
    assert order_to_service_request(*row(fraction), "Patient/pid")["authoredOn"] == "2031-01-01T08:00:00.250Z"
    day = service_request_to_order({**SR, "authoredOn": "2031-01-01"})
    assert day.authored_at == datetime(2031, 1, 1)
    assert order_to_service_request(*row(day), "Patient/pid")["authoredOn"] == "2031-01-01"
    absent = service_request_to_order(SR)
    assert absent.authored_at is None  # the store takes the receipt time
    assert order_to_service_request(*row(absent, datetime(2030, 5, 6, 7, 8, 9)), "Patient/pid")["authoredOn"] == \
        "2030-05-06T07:08:09Z"


def test_hl7_orc_9_is_authored_on():
    with_offset = hl7_order("04_omi_o23_nw_mr_two_sps_v251.hl7")  # ORC-9 20250315101500+0100
    assert with_offset.authored_at == datetime(2025, 3, 15, 9, 15)
    assert order_to_service_request(*row(with_offset), "Patient/pid")["authoredOn"] == "2025-03-15T09:15:00Z"
    local = hl7_order("01_orm_o01_nw_ct_v231.hl7")  # ORC-9 20250314081500, no offset in it nor in MSH-7
    assert local.authored_at == datetime(2025, 3, 14, 8, 15).astimezone().astimezone(UTC).replace(tzinfo=None)
    assert hl7_order("03_orm_o01_xo_reschedule_ct_v231.hl7").authored_at is None  # a change: not the authoring
