"""Worklist REST: items created from DICOM JSON answer MWL C-FIND (pynetdicom SCU), list and delete;
bad bodies get 400 and change nothing; the read-only user cannot write."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from tests.contract.conftest import Http

ITEM = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "RÖNTGEN^WILHELM"}]},
    "00100020": {"vr": "LO", "Value": ["REST-1"]},
    "00100030": {"vr": "DA", "Value": ["18450327"]},
    "00080050": {"vr": "SH", "Value": ["ACC-REST-1"]},
    "00401001": {"vr": "SH", "Value": ["RP-REST-1"]},
    "00400100": {"vr": "SQ", "Value": [{
        "00400001": {"vr": "AE", "Value": ["XRAY1"]},
        "00080060": {"vr": "CS", "Value": ["CR"]},
        "00400002": {"vr": "DA", "Value": ["20261122"]},
        "00400003": {"vr": "TM", "Value": ["101500"]},
        "00400007": {"vr": "LO", "Value": ["Chest PA"]},
    }]},
}


def _find(port: int, station: str) -> list[Dataset]:
    ae = AE(ae_title="XRAY1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB")
    assert assoc.is_established
    q = Dataset()
    q.PatientName = ""
    q.PatientID = ""
    q.AccessionNumber = ""
    q.StudyInstanceUID = ""
    sps = Dataset()
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = ""
    sps.ScheduledProcedureStepID = ""
    q.ScheduledProcedureStepSequence = [sps]
    out = [ident for status, ident in assoc.send_c_find(q, ModalityWorklistInformationFind)
           if status and status.Status in (0xFF00, 0xFF01)]
    assoc.release()
    return out


def test_create_find_list_delete(api: Http, listeners: Any) -> None:
    resp = api.post("/worklists", json=ITEM)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    found = _find(listeners.dimse.port, "XRAY1")
    assert len(found) == 1
    assert str(found[0].PatientName) == "RÖNTGEN^WILHELM" and found[0].AccessionNumber == "ACC-REST-1"
    assert found[0].StudyInstanceUID == created["StudyInstanceUID"]
    listed = api.get("/worklists").json()
    assert [i["ID"] for i in listed] == [created["ID"]]
    assert listed[0]["Tags"]["00400100"]["Value"][0]["00400009"]["Value"] == ["RP-REST-1"]
    assert api.delete(f"/worklists/{created['ID']}").status_code == 200
    assert _find(listeners.dimse.port, "XRAY1") == [] and api.get("/worklists").json() == []
    assert api.delete(f"/worklists/{created['ID']}").status_code == 404


def test_bad_items_are_refused(api: Http) -> None:
    no_id = {k: v for k, v in ITEM.items() if k != "00100020"}
    no_steps = {k: v for k, v in ITEM.items() if k != "00400100"}
    long_acc = {**ITEM, "00080050": {"vr": "SH", "Value": ["A" * 40]}}
    bad_date = {**ITEM, "00400100": {"vr": "SQ", "Value": [{"00400002": {"vr": "DA", "Value": ["tomorrow"]}}]}}
    for body in (no_id, no_steps, long_acc, bad_date, [1, 2], {"zz": 1}):
        resp = api.post("/worklists", json=body)
        assert resp.status_code == 400, (body, resp.text)
    resp = api.post("/worklists", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert api.get("/worklists").json() == []
    assert api.get("/worklists?limit=0").status_code == 400
