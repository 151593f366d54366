"""Worklist record -> MWL C-FIND response identifier (PS3.4 K.6.1.2.2)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from mappings.worklist_to_dicom import (
    json_to_dataset,
    record_to_mwl_identifier,
    record_to_mwl_identifier_bytes,
    request_template,
    text_values,
)


def record(name: str = "Smith^John", charset: str = "") -> dict[str, Any]:
    code = {"00080100": {"vr": "SH", "Value": ["P1"]}, "00080102": {"vr": "SH", "Value": ["LOCAL"]},
            "00080104": {"vr": "LO", "Value": ["Protocol one"]}}
    return {
        "step_pk": 1, "order_pk": 1, "sps_id": "SPS1", "status": "SCHEDULED", "modality": "CT",
        "station_aet": "CT1", "start_date": "20300101", "start_time": "0930",
        "study_uid": "1.2.3", "accession_number": "ACC1", "requested_procedure_id": "RP1", "patient_id": "PID1",
        "issuer_of_patient_id": "", "charset": charset,
        "patient": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
                    "00100020": {"vr": "LO", "Value": ["stale"]}, "00100030": {"vr": "DA", "Value": ["19700101"]}},
        "order": {"00321060": {"vr": "LO", "Value": ["CT chest"]}, "00401003": {"vr": "SH", "Value": ["ROUTINE"]},
                  "00081110": {"vr": "SQ", "Value": []}},
        "step": {"00400007": {"vr": "LO", "Value": ["Chest"]}, "00400008": {"vr": "SQ", "Value": [code]},
                 "00400020": {"vr": "CS", "Value": ["SCHEDULED"]}, "00400006": {"vr": "PN"}},
    }


def request(**top: str) -> Dataset:
    ds = Dataset()
    for k, v in top.items():
        setattr(ds, k, v)
    return ds


def test_only_requested_keys_and_columns_win():
    ds = record_to_mwl_identifier(record(), request(PatientName="", PatientID="", AccessionNumber="",
                                                    StudyInstanceUID="", AdmissionID=""))
    assert [e.keyword for e in ds] == ["AccessionNumber", "PatientName", "PatientID", "StudyInstanceUID",
                                       "AdmissionID"]
    assert ds.PatientID == "PID1"  # the indexed column, not the stale JSON
    assert ds.AccessionNumber == "ACC1" and ds.StudyInstanceUID == "1.2.3"
    assert ds.AdmissionID in (None, "")
    assert "SpecificCharacterSet" not in ds


def test_sps_item_with_requested_sub_keys():
    item = Dataset()
    item.ScheduledStationAETitle = "CT1"
    item.ScheduledProcedureStepStartDate = ""
    item.ScheduledPerformingPhysicianName = ""
    proto = Dataset()
    proto.CodeMeaning = ""
    item.ScheduledProtocolCodeSequence = [proto]
    req = request(RequestedProcedureDescription="")
    req.ScheduledProcedureStepSequence = [item]
    ds = record_to_mwl_identifier(record(), req)
    sps = ds.ScheduledProcedureStepSequence
    assert len(sps) == 1
    got = sps[0]
    assert [e.keyword for e in got] == ["ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                                        "ScheduledPerformingPhysicianName", "ScheduledProtocolCodeSequence"]
    assert got.ScheduledProcedureStepStartDate == "20300101"
    assert [e.keyword for e in got.ScheduledProtocolCodeSequence[0]] == ["CodeMeaning"]
    assert ds.RequestedProcedureDescription == "CT chest"


def test_empty_sequence_key_returns_whole_item():
    req = request()
    req.ScheduledProcedureStepSequence = []
    req.ReferencedStudySequence = []
    ds = record_to_mwl_identifier(record(), req)
    sps = ds.ScheduledProcedureStepSequence[0]
    assert sps.Modality == "CT" and sps.ScheduledProcedureStepID == "SPS1" and sps.ScheduledProcedureStepStartTime
    assert sps.ScheduledProtocolCodeSequence[0].CodingSchemeDesignator == "LOCAL"
    assert ds.ReferencedStudySequence == []


def encoded(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def test_charset_latin1_kept():
    ds = record_to_mwl_identifier(record("MÜLLER^Hans", "ISO_IR 100"), request(PatientName=""))
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert b"M\xdcLLER^Hans" in encoded(ds)


def test_charset_utf8_when_not_encodable_or_unknown():
    ds = record_to_mwl_identifier(record("山田^太郎", "ISO_IR 100"), request(PatientName=""))
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert "山田^太郎".encode() in encoded(ds)
    ds = record_to_mwl_identifier(record("Zoë^A", ""), request(PatientName=""))
    assert ds.SpecificCharacterSet == "ISO_IR 192"


def test_charset_looks_into_sequences():
    rec = record(charset="ISO_IR 100")
    rec["step"]["00400007"] = {"vr": "LO", "Value": ["Thorax ärztlich"]}
    req = request()
    item = Dataset()
    item.ScheduledProcedureStepDescription = ""
    req.ScheduledProcedureStepSequence = [item]
    ds = record_to_mwl_identifier(rec, req)
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert "Thorax ärztlich" in text_values(ds)


def test_json_to_dataset_person_name_groups_and_numbers():
    ds = json_to_dataset({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]},
        "00101030": {"vr": "DS", "Value": [72.5]},
        "00101020": {"vr": "DS"},
    })
    assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎"
    assert float(ds.PatientWeight) == 72.5
    assert ds.PatientSize is None


def decoded(raw: bytes, implicit: bool) -> Dataset:
    from io import BytesIO

    from pynetdicom.dsutils import decode

    return decode(BytesIO(raw), implicit, True)


def full_request() -> Dataset:
    req = request(PatientName="", PatientID="", PatientBirthDate="", AccessionNumber="", StudyInstanceUID="",
                  RequestedProcedureDescription="", AdmissionID="", ReferencedStudySequence=[])
    item = Dataset()
    item.ScheduledStationAETitle = ""
    item.ScheduledProcedureStepStartTime = ""
    item.ScheduledPerformingPhysicianName = ""
    proto = Dataset()
    proto.CodeValue = ""
    proto.CodeMeaning = ""
    item.ScheduledProtocolCodeSequence = [proto]
    req.ScheduledProcedureStepSequence = [item]
    return req


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize(("name", "charset"), [("Smith^John", ""), ("MÜLLER^Hans", "ISO_IR 100"),
                                               ("山田^太郎", "ISO_IR 100"), ("Zoë", "ISO_IR 192")])
def test_bytes_path_equals_dataset_path(implicit: bool, name: str, charset: str):
    for req in (full_request(), request(PatientName="", ScheduledProcedureStepSequence=[])):
        raw = record_to_mwl_identifier_bytes(record(name, charset), request_template(req), implicit=implicit)
        assert raw is not None
        expected = record_to_mwl_identifier(record(name, charset), req)
        got = decoded(raw, implicit)
        assert got.to_json_dict() == expected.to_json_dict()


def test_bytes_path_declines_what_it_cannot_write():
    rec = record("山田^太郎", "ISO 2022 IR 87")
    assert record_to_mwl_identifier_bytes(rec, request_template(request(PatientName="")), implicit=False) is None
    ds = record_to_mwl_identifier(rec, request(PatientName=""))
    assert ds.SpecificCharacterSet == "ISO 2022 IR 87"  # the order's own (code extension) charset
