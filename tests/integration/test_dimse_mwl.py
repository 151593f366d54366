"""Modality Worklist C-FIND SCP (PS3.4 Annex K) over orders written by OrderRepository: DCMTK
``findscu -W`` and pynetdicom as the two requesters, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from hub.app import Hub
from hub.domain.orders import OrderAction, OrderCommand, PatientIdentity, PatientRecord, ScheduledStep, StepStatus
from tests.conftest import dcmtk, dcmtk_env


def pn(name: str) -> dict:
    return {"vr": "PN", "Value": [{"Alphabetic": name}]}


def s(vr: str, value: str) -> dict:
    return {"vr": vr, "Value": [value]}


def order_command(n: int, *, name: str, station: str, modality: str, date: str, time: str = "0930",
                  status: StepStatus = StepStatus.SCHEDULED, charset: str = "", pid: str = "") -> OrderCommand:
    study = f"1.2.826.0.1.3680043.10.543.{n}"
    pid = pid or f"PID{n}"
    patient = PatientRecord(PatientIdentity(pid, "HOSP"), {
        "00100010": pn(name), "00100020": s("LO", pid), "00100021": s("LO", "HOSP"),
        "00100030": s("DA", "19700101"), "00100040": s("CS", "M"),
    })
    code = {"00080100": s("SH", f"P{n}"), "00080102": s("SH", "LOCAL"), "00080104": s("LO", "Protocol")}
    step_attrs = {
        "00400001": s("AE", station), "00080060": s("CS", modality), "00400002": s("DA", date),
        "00400003": s("TM", time), "00400009": s("SH", f"SPS{n}"), "00400007": s("LO", f"Step {n}"),
        "00400006": pn("Tech^Tom"), "00400008": {"vr": "SQ", "Value": [code]},
    }
    step = ScheduledStep(f"SPS{n}", status, modality, station, date, time, step_attrs)
    attrs = {"00401001": s("SH", f"RP{n}"), "00321060": s("LO", f"Procedure {n}"),
             "00080090": pn("Referrer^Rita"), "00401003": s("SH", "ROUTINE")}
    return OrderCommand(OrderAction.CREATE, "NW", "SC", patient, study, f"ACC{n}", f"RP{n}", f"PL{n}", f"FI{n}",
                        attrs, [step], specific_character_set=charset)


@pytest.fixture
def worklist(hub: Hub) -> Hub:
    cmds = [
        order_command(1, name="Smith^John", station="CT1", modality="CT", date="20300101", time="0800"),
        order_command(2, name="Smithers^Wayland", station="CT1", modality="CT", date="20300101", time="1400"),
        order_command(3, name="Jones^Ann", station="MR1", modality="MR", date="20300102"),
        order_command(4, name="MÜLLER^Hans", station="CT2", modality="CT", date="20300103", charset="ISO_IR 100"),
        order_command(5, name="Started^Sam", station="CT1", modality="CT", date="20300101",
                      status=StepStatus.STARTED),
        order_command(6, name="山田^太郎", station="US1", modality="US", date="20300104", charset="ISO_IR 100"),
    ]
    with hub.orders.unit() as unit:
        for cmd in cmds:
            unit.apply_order(cmd, "test")
    return hub


def findscu(port: int, tmp: Path, keys: list[str]) -> tuple[subprocess.CompletedProcess, list[Dataset]]:
    out = tmp / f"rsp{len(list(tmp.iterdir())) if tmp.exists() else 0}"
    out.mkdir(parents=True)
    args = [dcmtk("findscu"), "-W", "-aec", "RISHUB", "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    proc = subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, env=dcmtk_env(), timeout=30)
    files = sorted(out.glob("rsp*.dcm"))
    return proc, [pydicom.dcmread(f) for f in files]


SPS = "ScheduledProcedureStepSequence[0]"
BASE = ["PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID",
        f"{SPS}.ScheduledStationAETitle", f"{SPS}.Modality", f"{SPS}.ScheduledProcedureStepStartDate",
        f"{SPS}.ScheduledProcedureStepStartTime", f"{SPS}.ScheduledProcedureStepID"]


def keys(**values: str) -> list[str]:
    out = []
    for k in BASE:
        short = k.rsplit(".", 1)[-1]
        out.append(f"{k}={values[short]}" if short in values else k)
    return out


def accessions(rows: list[Dataset]) -> list[str]:
    return sorted(str(r.AccessionNumber) for r in rows)


def test_findscu_station_and_date(worklist: Hub, listeners, tmp_path: Path):
    proc, rows = findscu(listeners.dimse.port, tmp_path, keys(ScheduledStationAETitle="CT1",
                                                               ScheduledProcedureStepStartDate="20300101"))
    assert proc.returncode == 0, proc.stderr
    # ACC5 is STARTED: not on the worklist unless the status is asked for
    assert accessions(rows) == ["ACC1", "ACC2"]
    first = rows[0]
    assert [r.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime for r in rows] == ["0800", "1400"]
    item = first.ScheduledProcedureStepSequence[0]
    assert (item.ScheduledStationAETitle, item.Modality, item.ScheduledProcedureStepID) == ("CT1", "CT", "SPS1")
    assert str(first.PatientName) == "Smith^John" and first.RequestedProcedureID == "RP1"
    assert first.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.1"
    assert "SpecificCharacterSet" not in first  # ASCII only
    assert "PatientBirthDate" not in first  # not requested


def test_findscu_modality_date_range_name_wildcard_accession(worklist: Hub, listeners, tmp_path: Path):
    port = listeners.dimse.port
    _, rows = findscu(port, tmp_path, keys(Modality="CT", ScheduledProcedureStepStartDate="20300101-20300103"))
    assert accessions(rows) == ["ACC1", "ACC2", "ACC4"]
    _, rows = findscu(port, tmp_path, keys(ScheduledProcedureStepStartDate="20300102-"))
    assert accessions(rows) == ["ACC3", "ACC4", "ACC6"]
    _, rows = findscu(port, tmp_path, keys(PatientName="smith*"))  # case-insensitive
    assert accessions(rows) == ["ACC1", "ACC2"]
    _, rows = findscu(port, tmp_path, keys(PatientName="SMITH^J?HN"))
    assert accessions(rows) == ["ACC1"]
    _, rows = findscu(port, tmp_path, keys(AccessionNumber="ACC3"))
    assert accessions(rows) == ["ACC3"]
    _, rows = findscu(port, tmp_path, keys(ScheduledStationAETitle="CT1", ScheduledProcedureStepStartTime="1000-"))
    assert accessions(rows) == ["ACC2"]
    _, rows = findscu(port, tmp_path, keys(PatientID="PID2"))
    assert accessions(rows) == ["ACC2"]


def test_findscu_status_asked(worklist: Hub, listeners, tmp_path: Path):
    _, rows = findscu(listeners.dimse.port, tmp_path,
                      [*keys(ScheduledStationAETitle="CT1"), f"{SPS}.ScheduledProcedureStepStatus=STARTED"])
    assert accessions(rows) == ["ACC5"]
    assert rows[0].ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"


def test_findscu_latin1_name(worklist: Hub, listeners, tmp_path: Path):
    _, rows = findscu(listeners.dimse.port, tmp_path, keys(PatientName="MUL*"))  # accent-insensitive
    assert len(rows) == 1
    r = rows[0]
    assert r.get_item("PatientName").value.rstrip(b" ") == "M\xdcLLER^Hans".encode("latin-1")  # raw bytes on the wire
    assert r.SpecificCharacterSet == "ISO_IR 100"
    assert str(r.PatientName) == "MÜLLER^Hans"


def test_findscu_falls_back_to_utf8(worklist: Hub, listeners, tmp_path: Path):
    _, rows = findscu(listeners.dimse.port, tmp_path, keys(AccessionNumber="ACC6"))
    assert rows[0].SpecificCharacterSet == "ISO_IR 192"  # not encodable in the order's Latin-1
    assert str(rows[0].PatientName) == "山田^太郎"


def pn_mwl(port: int, ds: Dataset) -> tuple[Dataset, list[Dataset]]:
    ae = AE(ae_title="PYMWL")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB")
    assert assoc.is_established
    out, final = [], None
    for st, identifier in assoc.send_c_find(ds, ModalityWorklistInformationFind):
        if st.Status in (0xFF00, 0xFF01):
            out.append(identifier)
        else:
            final = st
    assoc.release()
    return final, out


def test_pynetdicom_sequences_and_return_keys(worklist: Hub, listeners):
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.ReferringPhysicianName = ""
    ds.RequestedProcedureDescription = ""
    ds.AdmissionID = ""  # requested but not stored: comes back empty
    item = Dataset()
    item.ScheduledStationAETitle = "MR1"
    item.ScheduledProcedureStepDescription = ""
    item.ScheduledPerformingPhysicianName = ""
    proto = Dataset()
    proto.CodeValue = ""
    item.ScheduledProtocolCodeSequence = [proto]
    ds.ScheduledProcedureStepSequence = [item]
    final, rows = pn_mwl(listeners.dimse.port, ds)
    assert final.Status == 0x0000
    assert len(rows) == 1
    r = rows[0]
    assert str(r.PatientName) == "Jones^Ann" and r.PatientBirthDate == "19700101"
    assert str(r.ReferringPhysicianName) == "Referrer^Rita"
    assert r.RequestedProcedureDescription == "Procedure 3"
    assert "AdmissionID" in r and not r.AdmissionID
    assert "AccessionNumber" not in r
    sps = r.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledProcedureStepDescription == "Step 3"
    assert str(sps.ScheduledPerformingPhysicianName) == "Tech^Tom"
    code = sps.ScheduledProtocolCodeSequence[0]
    assert code.CodeValue == "P3" and "CodingSchemeDesignator" not in code  # only the requested sub-key
    assert "Modality" not in sps


def test_pynetdicom_empty_sequence_returns_whole_item(worklist: Hub, listeners):
    ds = Dataset()
    ds.AccessionNumber = "ACC1"
    ds.ScheduledProcedureStepSequence = []
    final, rows = pn_mwl(listeners.dimse.port, ds)
    assert final.Status == 0x0000
    sps = rows[0].ScheduledProcedureStepSequence[0]
    assert sps.Modality == "CT" and sps.ScheduledProcedureStepStatus == "SCHEDULED"
    assert sps.ScheduledProtocolCodeSequence[0].CodingSchemeDesignator == "LOCAL"


def test_malformed_identifier(worklist: Hub, listeners):
    ds = Dataset()
    ds.PatientName = ""
    a, b = Dataset(), Dataset()
    a.Modality, b.Modality = "CT", "MR"
    ds.ScheduledProcedureStepSequence = [a, b]
    final, rows = pn_mwl(listeners.dimse.port, ds)
    assert final.Status == 0xA900 and rows == []
    bad = Dataset()
    item = Dataset()
    item.ScheduledProcedureStepStartDate = "2030-13"
    bad.ScheduledProcedureStepSequence = [item]
    final, rows = pn_mwl(listeners.dimse.port, bad)
    assert final.Status == 0xA900


def test_cancel(hub: Hub, listeners):
    with hub.orders.unit() as unit:
        for n in range(1000, 3000):
            unit.apply_order(order_command(n, name="Bulk^Pat", station="BULK", modality="CT", date="20300105"), "t")
    ae = AE(ae_title="PYMWL")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", listeners.dimse.port, ae_title="RISHUB")
    ds = Dataset()
    ds.PatientName = ""
    item = Dataset()
    item.ScheduledStationAETitle = "BULK"
    ds.ScheduledProcedureStepSequence = [item]
    got, final = 0, None
    responses = assoc.send_c_find(ds, ModalityWorklistInformationFind, msg_id=7)
    for st, _ in responses:
        if st.Status == 0xFF00:
            got += 1
            if got == 1:
                assoc.send_c_cancel(7, query_model=ModalityWorklistInformationFind)
        else:
            final = st.Status
    assoc.release()
    assert (final, got < 2000) == (0xFE00, True), (final, got)
