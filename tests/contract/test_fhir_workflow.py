"""FHIR end to end over HTTP: an EHR places a ServiceRequest with ``fhirpy``; DCMTK ``findscu -W`` finds
the worklist item; a pynetdicom MPPS SCU completes it and the images are stored; ImagingStudy search
then shows the study available with its series, the ServiceRequest shows completed. Every resource the
server returns is checked by the npm FHIR R4 validator (``r4`` fixture)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from fhirpy import SyncFHIRClient
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

from hub.domain import Origin
from tests.contract.conftest import Http
from tests.synthetic import write_series

FINDSCU = "/usr/bin/findscu"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
DCM = "http://dicom.nema.org/resources/ontology/DCM"

pytestmark = pytest.mark.skipif(not Path(FINDSCU).exists() and not os.environ.get("CI"),
                                reason="DCMTK findscu not installed (CI installs it)")


def service_request(acc: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": "urn:oid:2.999.7",
                        "value": acc}],
        "contained": [{"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:oid:2.999.8",
                                                                             "value": "FHIR-P1"}],
                       "name": [{"family": "Ehr", "given": ["Erika"]}], "birthDate": "1975-06-07",
                       "gender": "female"}],
        "subject": {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "category": [{"coding": [{"system": DCM, "code": "CT"}]}],
        "occurrenceDateTime": "2031-02-03T09:45:00+01:00", "priority": "routine",
        "performer": [{"type": "Device", "display": "CT_EHR"}],
    }


def fhir(api: Http) -> requests.Session:
    s = requests.Session()
    s.auth = api.session.auth
    s.headers["Accept"] = "application/fhir+json"
    return s


def mpps(port: int, uid: str, ds: Dataset, *, create: bool) -> int:
    ae = AE(ae_title="CT_EHR")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB")
    assert assoc.is_established
    try:
        send = assoc.send_n_create if create else assoc.send_n_set
        status, _ = send(ds, ModalityPerformedProcedureStep, uid)
        return int(status.Status)
    finally:
        assoc.release()


def performed(item: Dataset) -> Dataset:
    ds = Dataset()
    ssa = Dataset()
    ssa.StudyInstanceUID = item.StudyInstanceUID
    ssa.AccessionNumber = item.AccessionNumber
    ssa.RequestedProcedureID = item.RequestedProcedureID
    ssa.ScheduledProcedureStepID = item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = item.PatientName
    ds.PatientID = item.PatientID
    ds.PerformedProcedureStepID = "PPS-FHIR"
    ds.PerformedStationAETitle = "CT_EHR"
    ds.PerformedProcedureStepStartDate = "20310203"
    ds.PerformedProcedureStepStartTime = "094600"
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = "CT"
    ds.PerformedSeriesSequence = []
    return ds


def test_service_request_to_worklist_to_mpps_to_imaging_study(api: Http, hub: Any, listeners: Any, r4: Any,
                                                              tmp_path: Path) -> None:
    base = f"{api.base}/fhir"
    client = SyncFHIRClient(base, authorization=requests.auth._basic_auth_str(*api.session.auth))
    sr = client.resource("ServiceRequest", **service_request("ACC-FHIR-1"))
    sr.save()
    assert sr.id and sr["status"] == "active"
    http = fhir(api)
    got = http.get(f"{base}/ServiceRequest/{sr.id}")
    assert got.status_code == 200 and got.headers["ETag"].startswith('W/"')
    r4.check(got.json())

    # The worklist item is there for the modality at once.
    out = tmp_path / "mwl"
    out.mkdir()
    run = subprocess.run([FINDSCU, "-W", "-aec", "RISHUB", "-X", "-od", str(out), "-k", "AccessionNumber=ACC-FHIR-1",
                          "-k", "PatientName", "-k", "PatientID", "-k", "StudyInstanceUID",
                          "-k", "RequestedProcedureID",
                          "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                          "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
                          "127.0.0.1", str(listeners.dimse.port)], capture_output=True, timeout=60,
                         env={**os.environ, "TCP_NODELAY": "1"})
    assert run.returncode == 0, run.stderr
    (item,) = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert str(item.PatientName) == "Ehr^Erika" and item.PatientID == "FHIR-P1"
    assert item.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "CT_EHR"
    study_uid = item.StudyInstanceUID

    # Registered ImagingStudy before any image.
    bundle = http.get(f"{base}/ImagingStudy", params={"basedon": f"ServiceRequest/{sr.id}"}).json()
    r4.check(bundle)
    assert [e["resource"]["status"] for e in bundle["entry"]] == ["registered"]

    # The modality performs it and stores the images.
    uid = "2.25.777000111"
    assert mpps(listeners.dimse.port, uid, performed(item), create=True) == 0
    for path in write_series(tmp_path / "ct", 3, seed="fhir-e2e", study_uid=study_uid, patient_id="FHIR-P1"):
        hub.ingest.store(Origin("dimse", remote_aet="CT_EHR"), path)
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate = "20310203"
    done.PerformedProcedureStepEndTime = "100000"
    assert mpps(listeners.dimse.port, uid, done, create=False) == 0

    deadline = time.monotonic() + 10
    while True:
        bundle = http.get(f"{base}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{study_uid}",
                                                          "_include": "ImagingStudy:subject"}).json()
        studies = [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "ImagingStudy"]
        if studies and studies[0]["status"] == "available" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    r4.check(bundle)
    (study,) = studies
    assert study["status"] == "available" and study["numberOfInstances"] == 3
    assert study["series"][0]["modality"] == {"system": DCM, "code": "CT"}
    patients = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patients and study["subject"]["reference"] == f"Patient/{patients[0]['id']}"
    after = http.get(f"{base}/ServiceRequest/{sr.id}").json()
    r4.check(after)
    assert after["status"] == "completed"
    assert after["meta"]["versionId"] != got.json()["meta"]["versionId"]

    # Conditional create of the same order is idempotent; a stale If-Match is refused.
    again = http.post(f"{base}/ServiceRequest", json=service_request("ACC-FHIR-1"),
                      headers={"Content-Type": "application/fhir+json", "If-None-Exist": "identifier=ACC-FHIR-1"})
    assert again.status_code == 200 and again.json()["id"] == sr.id
    stale = http.put(f"{base}/ServiceRequest/{sr.id}", json={**after, "status": "revoked"},
                     headers={"Content-Type": "application/fhir+json", "If-Match": got.headers["ETag"]})
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    r4.check(stale.json())
    late = http.put(f"{base}/ServiceRequest/{sr.id}", json={**after, "status": "revoked"},
                    headers={"Content-Type": "application/fhir+json", "If-Match": f'W/"{after["meta"]["versionId"]}"'})
    assert late.status_code == 422  # a completed order cannot be revoked
    for path in ("metadata", "Endpoint", f"Patient/{patients[0]['id']}"):
        r4.check(http.get(f"{base}/{path}").json())


def test_revoke_takes_the_item_off_the_worklist(api: Http, hub: Any, r4: Any) -> None:
    base = f"{api.base}/fhir"
    http = fhir(api)
    created = http.post(f"{base}/ServiceRequest", json=service_request("ACC-FHIR-2"),
                        headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201 and created.headers["Location"].startswith(f"{base}/ServiceRequest/")
    body = created.json()
    r4.check(body)
    revoked = http.put(f"{base}/ServiceRequest/{body['id']}", json={**body, "status": "revoked"},
                       headers={"Content-Type": "application/fhir+json", "If-Match": created.headers["ETag"]})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    from hub.domain.query import Condition, Match

    assert list(hub.worklist.find([Condition("AccessionNumber", Match.SINGLE, "ACC-FHIR-2")])) == []
    bad = http.post(f"{base}/ServiceRequest", data=b'{"resourceType": "ServiceRequest", "status": "bogus"}',
                    headers={"Content-Type": "application/fhir+json"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    r4.check(bad.json())
    user = requests.Session()
    hub.auth.set_password("reader", "reader-secret-pw", ("user",))
    user.auth = ("reader", "reader-secret-pw")
    refused = user.post(f"{base}/ServiceRequest", json=service_request("ACC-FHIR-3"),
                        headers={"Content-Type": "application/fhir+json"})
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"


def test_registered_imaging_study_schedules_and_reschedules(api: Http, hub: Any, r4: Any) -> None:
    """The imaging-service-request IG way: an ImagingStudy with status registered is an order."""
    base = f"{api.base}/fhir"
    http = fhir(api)
    sr = service_request("ACC-FHIR-IS")
    study = {"resourceType": "ImagingStudy", "status": "registered",
             "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.25.424242424242"},
                            {"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": "urn:oid:2.999.7",
                             "value": "ACC-FHIR-IS"}],
             "contained": sr["contained"], "subject": {"reference": "#p"},
             "modality": [{"system": DCM, "code": "CT"}], "started": "2031-02-04T08:00:00+01:00",
             "description": "CT chest"}
    created = http.post(f"{base}/ImagingStudy", json=study, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text
    body = created.json()
    r4.check(body)
    assert body["status"] == "registered" and body["id"].startswith("o-")
    from hub.domain.query import Condition, Match

    (item,) = hub.worklist.find([Condition("AccessionNumber", Match.SINGLE, "ACC-FHIR-IS")])
    cancelled = http.put(f"{base}/ImagingStudy/{body['id']}", json={**study, "id": body["id"], "status": "cancelled"},
                         headers={"Content-Type": "application/fhir+json", "If-Match": created.headers["ETag"]})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
    r4.check(cancelled.json())
    assert list(hub.worklist.find([Condition("AccessionNumber", Match.SINGLE, "ACC-FHIR-IS")])) == []
