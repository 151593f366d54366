"""FhirOrderService on SQLite and PostgreSQL (issue 7): a created ServiceRequest is a worklist item for
``WorklistService`` and for DCMTK ``findscu -W`` at once; conditional create, If-Match, revoke, 412/409/422."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest

from hub.app import Hub
from hub.domain.query import Condition, Match
from hub.errors import HubError
from hub.services.fhir_orders import FhirOrderService
from mappings.fhir_to_order import FhirOrderPolicy
from tests.conftest import dcmtk, dcmtk_env

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACC_SYSTEM = "http://ris.example/accession"


def service_request(acc: str, pid: str = "FP1", *, status: str = "active", start: str = "2031-02-03T09:45:00+01:00",
                    station: str = "CT_FHIR") -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "status": status, "intent": "order",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": ACC_SYSTEM, "value": acc}],
        "contained": [{"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:oid:1.2.3", "value": pid}],
                       "name": [{"family": "Fhir", "given": ["Fiona"]}], "birthDate": "1980-04-05",
                       "gender": "female"}],
        "subject": {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}],
        "occurrenceDateTime": start, "priority": "stat",
        "performer": [{"type": "Device", "display": station}],
    }


@pytest.fixture
def fhir(hub: Hub) -> FhirOrderService:
    return FhirOrderService(hub.orders, hub.db, FhirOrderPolicy())


def worklist(hub: Hub, acc: str, **extra: str) -> list[dict[str, Any]]:
    conds = [Condition("AccessionNumber", Match.SINGLE, acc)]
    conds += [Condition(k, Match.SINGLE, val) for k, val in extra.items()]
    return list(hub.worklist.find(conds))


def findscu(port: int, out: Path, acc: str) -> list[pydicom.Dataset]:
    out.mkdir(parents=True)
    sps = "ScheduledProcedureStepSequence[0]"
    keys = [f"AccessionNumber={acc}", "PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID",
            "RequestedProcedurePriority", f"{sps}.ScheduledStationAETitle", f"{sps}.Modality",
            f"{sps}.ScheduledProcedureStepStartDate", f"{sps}.ScheduledProcedureStepStartTime"]
    args = [dcmtk("findscu"), "-W", "-aec", "RISHUB", "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    proc = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, env=dcmtk_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]


def test_create_is_on_the_worklist_and_on_mwl_c_find(hub: Hub, fhir: FhirOrderService, listeners, tmp_path: Path):
    res, created = fhir.create(service_request("FACC1"))
    assert created and res["status"] == "active" and res["meta"]["versionId"] == "1"
    assert res["subject"]["reference"].startswith("Patient/")
    assert fhir.read(res["id"]) == res
    (item,) = worklist(hub, "FACC1")
    assert (item["status"], item["modality"], item["station_aet"], item["start_date"], item["start_time"]) == \
        ("SCHEDULED", "CT", "CT_FHIR", "20310203", "094500")
    (ds,) = findscu(listeners.dimse.port, tmp_path / "a", "FACC1")
    step = ds.ScheduledProcedureStepSequence[0]
    assert (str(ds.PatientName), ds.PatientID, ds.RequestedProcedurePriority) == ("Fhir^Fiona", "FP1", "STAT")
    assert (step.ScheduledStationAETitle, step.Modality, step.ScheduledProcedureStepStartDate) == \
        ("CT_FHIR", "CT", "20310203")
    uid = next(i["value"] for i in res["identifier"] if i["system"] == "urn:dicom:uid")
    assert uid == f"urn:oid:{ds.StudyInstanceUID}"

    # revoke -> CANCELED, kept but hidden from the worklist and from MWL C-FIND
    revoked = fhir.update(res["id"], {**service_request("FACC1", status="revoked"), "id": res["id"]},
                          if_match='W/"1"')
    assert (revoked["status"], revoked["meta"]["versionId"]) == ("revoked", "2")
    assert worklist(hub, "FACC1") == []
    assert [i["status"] for i in worklist(hub, "FACC1", ScheduledProcedureStepStatus="CANCELED")] == ["CANCELED"]
    assert findscu(listeners.dimse.port, tmp_path / "b", "FACC1") == []
    with pytest.raises(HubError) as exc:  # a revoked order is not reopened
        fhir.update(res["id"], service_request("FACC1"))
    assert exc.value.http_status == 422


def test_conditional_create_is_idempotent(hub: Hub, fhir: FhirOrderService):
    first, created = fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")
    again, created_again = fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")
    assert created and not created_again and again == first
    assert len(worklist(hub, "FACC2")) == 1
    # the same request without the condition would make a second order of the same study: 409
    with pytest.raises(HubError) as exc:
        fhir.create(service_request("FACC2"))
    assert exc.value.http_status == 409
    # the condition matches by value across systems when no system is given; another system does not match
    assert fhir.create(service_request("FACC2"), if_none_exist="identifier=FACC2")[1] is False
    other = copy.deepcopy(service_request("FACC3"))
    other["identifier"].append({"type": {"coding": [{"system": V2, "code": "PLAC"}]}, "value": "FACC2"})
    assert fhir.create(other)[1] is True
    with pytest.raises(HubError) as exc:  # FACC2 now names two orders (an accession and a placer number)
        fhir.create(service_request("FACC2"), if_none_exist="identifier=FACC2")
    assert (exc.value.code, exc.value.http_status) == ("precondition_failed", 412)
    assert fhir.create(service_request("FACC2"), if_none_exist=f"identifier={ACC_SYSTEM}|FACC2")[1] is False


def test_if_match_update_reschedule_and_412(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC4"))
    moved = fhir.update(res["id"], service_request("FACC4", start="2031-02-04T14:00:00+01:00", station="CT_TWO"),
                        if_match=f'W/"{res["meta"]["versionId"]}"')
    assert moved["meta"]["versionId"] == "2" and moved["occurrenceDateTime"] == "2031-02-04T14:00:00+01:00"
    (item,) = worklist(hub, "FACC4")
    assert (item["station_aet"], item["start_date"], item["start_time"]) == ("CT_TWO", "20310204", "140000")
    with pytest.raises(HubError) as exc:
        fhir.update(res["id"], service_request("FACC4"), if_match='W/"1"')
    assert (exc.value.code, exc.value.http_status) == ("precondition_failed", 412)
    assert fhir.read(res["id"])["meta"]["versionId"] == "2"
    with pytest.raises(HubError) as exc:
        fhir.update("999999", service_request("FACC4"))
    assert exc.value.http_status == 404
    with pytest.raises(HubError) as exc:
        fhir.read("nope")
    assert exc.value.http_status == 404


def test_on_hold_hides_and_active_restores(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC5"))
    held = fhir.update(res["id"], service_request("FACC5", status="on-hold"))
    assert held["status"] == "on-hold" and worklist(hub, "FACC5") == []
    back = fhir.update(res["id"], service_request("FACC5"))
    assert back["status"] == "active" and len(worklist(hub, "FACC5")) == 1


def test_revoking_a_completed_order_is_422(hub: Hub, fhir: FhirOrderService):
    res, _ = fhir.create(service_request("FACC6"))
    done = fhir.update(res["id"], service_request("FACC6", status="completed"))
    assert done["status"] == "completed" and worklist(hub, "FACC6") == []
    with pytest.raises(HubError) as exc:
        fhir.update(res["id"], service_request("FACC6", status="revoked"), if_match=f'"{done["meta"]["versionId"]}"')
    assert (exc.value.code, exc.value.http_status) == ("business_rule", 422)
    assert fhir.read(res["id"])["status"] == "completed"


def test_invalid_resource_is_400_with_expression(fhir: FhirOrderService):
    with pytest.raises(HubError) as exc:
        fhir.create({**service_request("FACC7"), "occurrenceDateTime": "2031-13-01"})
    assert exc.value.http_status == 400 and exc.value.attribute.startswith("ServiceRequest.occurrence")
    with pytest.raises(HubError) as exc:
        fhir.create(service_request("FACC7", status="completed"))
    assert exc.value.http_status == 422


def test_search(hub: Hub, fhir: FhirOrderService):
    a, _ = fhir.create(service_request("FS1", "PA"))
    b, _ = fhir.create(service_request("FS2", "PA"))
    c, _ = fhir.create(service_request("FS3", "PB"))
    fhir.update(b["id"], service_request("FS2", "PA", status="revoked"))
    ids = lambda found: [r["id"] for r in found[0]]  # noqa: E731
    assert ids(fhir.search(patient_id="PA")) == [a["id"], b["id"]]
    assert ids(fhir.search(patient_id="PA", status="active")) == [a["id"]]
    assert ids(fhir.search(status="revoked")) == [b["id"]]
    assert ids(fhir.search(status="active,revoked", count=1, offset=1)) == [b["id"]]
    assert fhir.search(status="active,revoked", count=1)[1] == 3
    assert ids(fhir.search(identifier=f"{ACC_SYSTEM}|FS3")) == [c["id"]]
    assert ids(fhir.search(identifier="urn:oid:9|FS3")) == []
    assert ids(fhir.search(authored=[("ge", "2000-01-01"), ("lt", "2999")], patient_id="PB")) == [c["id"]]
    assert ids(fhir.search(authored=[("lt", "2000-01-01")])) == []
    with pytest.raises(HubError):
        fhir.search(authored=[("xx", "2000")])


def test_imaging_study_registered_schedules(hub: Hub, fhir: FhirOrderService):
    study = {"resourceType": "ImagingStudy", "status": "registered",
             "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.826.0.1.3680043.10.543.777"},
                            {"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "value": "FIS1"}],
             "subject": {"identifier": {"system": "urn:oid:1.2.3", "value": "FP9"}},
             "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"}],
             "started": "2031-05-06T07:00:00Z"}
    res, created = fhir.schedule_imaging_study(study)
    assert created and res["status"] == "active"
    (item,) = worklist(hub, "FIS1")
    assert (item["study_uid"], item["modality"], item["start_date"]) == \
        ("1.2.826.0.1.3680043.10.543.777", "MR", "20310506")
    assert fhir.schedule_imaging_study(study)[1] is False  # the same study again: updated, not duplicated
    cancelled, _ = fhir.schedule_imaging_study({**study, "status": "cancelled"})
    assert cancelled["status"] == "revoked" and worklist(hub, "FIS1") == []


def test_subject_resolved_by_the_patient_lookup(hub: Hub):
    patients = {"Patient/p-1": {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "LK1"}],
                                "name": [{"family": "Lookup", "given": ["Lee"]}]}}
    svc = FhirOrderService(hub.orders, hub.db, patient_lookup=patients.get)
    res = {k: val for k, val in service_request("FLK1").items() if k != "contained"}
    created, _ = svc.create({**res, "subject": {"reference": "Patient/p-1"}})
    (item,) = worklist(hub, "FLK1")
    assert item["patient_id"] == "LK1" and item["patient"]["00100010"]["Value"][0]["Alphabetic"] == "Lookup^Lee"
    with pytest.raises(HubError) as exc:
        svc.create({**res, "subject": {"reference": "Patient/unknown"}})
    assert (exc.value.http_status, exc.value.attribute) == (422, "ServiceRequest.subject")
