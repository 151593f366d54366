"""C-FIND SCP (PS3.4 C.4.1) with DCMTK findscu and pynetdicom as a second stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from hub.app import Hub
from hub.domain import Origin
from tests.conftest import TEST_FILES, dcmtk, dcmtk_env
from tests.synthetic import uid, write_series

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


@pytest.fixture
def archive(hub: Hub, tmp_path: Path) -> Hub:
    """Three patients: Smith (CT, 3 images), Müller (CT 2 images + MR 1 image), CT_small."""
    o = Origin("import")
    for p in write_series(tmp_path / "a", 3, rows=8, cols=8, patient_id="P1", patient_name="Smith^John", seed="a"):
        hub.ingest.store(o, p)
    for p in write_series(tmp_path / "b", 2, rows=8, cols=8, patient_id="P2", patient_name="Müller^Zoë", seed="b"):
        hub.ingest.store(o, p)
    from tests.synthetic import ct_slice

    mr = ct_slice(0, rows=8, cols=8, patient_id="P2", patient_name="Müller^Zoë", seed="b",
                  series_uid=uid("b", "mr-series"))
    mr.Modality = "MR"
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = uid("b", "mr", 0)
    mr.StudyDate = "20261101"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "CT-CHEST", "LOCAL", "CT chest"
    mr.ProcedureCodeSequence = [code]
    req = Dataset()
    req.RequestedProcedureID, req.ScheduledProcedureStepID = "RP42", "SPS7"
    mr.RequestAttributesSequence = [req]
    mr.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    hub.ingest.store(o, tmp_path / "mr.dcm")
    hub.ingest.store(o, TEST_FILES / "CT_small.dcm")
    return hub


def pn_find(port: int, keys: dict[str, object], model=StudyRootQueryRetrieveInformationModelFind):
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB")
    assert assoc.is_established
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    out = []
    final = None
    for status, identifier in assoc.send_c_find(ds, model):
        if status.Status in (0xFF00, 0xFF01):
            out.append(identifier)
        else:
            final = status
    assoc.release()
    return final, out


def test_study_level_wildcard_name_counts_and_modalities(archive: Hub, listeners):
    final, rows = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "STUDY", "PatientName": "smi*", "StudyInstanceUID": "",
        "NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "", "ModalitiesInStudy": "",
        "RetrieveAETitle": "", "InstanceAvailability": "", "SOPClassesInStudy": "",
    })
    assert final.Status == 0x0000
    assert len(rows) == 1
    r = rows[0]
    assert str(r.PatientName) == "Smith^John"
    assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (1, 3)
    assert r.ModalitiesInStudy == "CT" and r.RetrieveAETitle == "RISHUB" and r.InstanceAvailability == "ONLINE"
    assert r.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.2"
    assert r.QueryRetrieveLevel == "STUDY"
    assert "PatientID" not in r  # only requested keys come back


def test_modalities_in_study_matches_any_series(archive: Hub, listeners):
    _, rows = pn_find(listeners.dimse.port, {"QueryRetrieveLevel": "STUDY", "ModalitiesInStudy": "MR",
                                             "PatientID": ""})
    assert [r.PatientID for r in rows] == ["P2"]
    assert rows[0].ModalitiesInStudy == ["CT", "MR"]


@pytest.mark.parametrize(
    "keys,expected",
    [
        ({"StudyDate": "20261101"}, {"P1", "P2"}),
        ({"StudyDate": "20261001-20261130"}, {"P1", "P2"}),
        ({"StudyDate": "-20050101"}, {"1CT1"}),
        ({"StudyDate": "20050101-"}, {"P1", "P2"}),
        ({"StudyTime": "10-11"}, {"P1", "P2"}),
        ({"StudyTime": "07"}, {"1CT1"}),
        ({"StudyInstanceUID": f"{CT_SMALL_STUDY}\\{uid('a', 'study')}"}, {"1CT1", "P1"}),
        ({"AccessionNumber": "ACC*"}, {"P1", "P2"}),
        ({"PatientID": "P?"}, {"P1", "P2"}),
        ({"PatientID": "p1"}, set()),  # non-PN strings match case-sensitively
        ({"PatientName": "MULLER^ZOE"}, {"P2"}),  # case- and accent-insensitive names
        ({"ReferringPhysicianName": "referrer*"}, {"P1", "P2"}),
        ({"StudyDescription": "ct chest"}, {"P1", "P2"}),
    ],
)
def test_matching_rules(archive: Hub, listeners, keys: dict, expected: set):
    final, rows = pn_find(listeners.dimse.port, {"QueryRetrieveLevel": "STUDY", "PatientID": "", **keys})
    assert final.Status == 0x0000
    assert {r.PatientID for r in rows} == expected


def test_patient_root_patient_and_image_levels(archive: Hub, listeners):
    final, rows = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "PATIENT", "PatientID": "P2", "PatientName": "", "NumberOfPatientRelatedStudies": "",
        "NumberOfPatientRelatedSeries": "", "NumberOfPatientRelatedInstances": "",
    }, PatientRootQueryRetrieveInformationModelFind)
    assert final.Status == 0x0000 and len(rows) == 1
    r = rows[0]
    assert (r.NumberOfPatientRelatedStudies, r.NumberOfPatientRelatedSeries, r.NumberOfPatientRelatedInstances) == (
        1, 2, 3)
    _, images = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "IMAGE", "PatientID": "1CT1", "StudyInstanceUID": CT_SMALL_STUDY,
        "SeriesInstanceUID": "", "SOPInstanceUID": "", "Rows": "", "ImagePositionPatient": "", "KVP": "",
    }, PatientRootQueryRetrieveInformationModelFind)
    assert len(images) == 1
    img = images[0]
    assert img.Rows == 128 and img.KVP == "120" and len(img.ImagePositionPatient) == 3


def test_series_level_with_instance_counts(archive: Hub, listeners):
    _, rows = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "SERIES", "PatientID": "P2", "Modality": "", "SeriesInstanceUID": "",
        "NumberOfSeriesRelatedInstances": "", "SeriesNumber": "",
    })
    assert sorted((r.Modality, r.NumberOfSeriesRelatedInstances) for r in rows) == [("CT", 2), ("MR", 1)]


@pytest.mark.parametrize(
    "keys,status",
    [
        ({"PatientID": ""}, 0xA900),  # no QueryRetrieveLevel
        ({"QueryRetrieveLevel": "BOGUS"}, 0xA900),
        ({"QueryRetrieveLevel": "PATIENT"}, 0xA900),  # the Study Root has no PATIENT level
        ({"QueryRetrieveLevel": "STUDY", "SOPInstanceUID": "1.2.3"}, 0xA900),  # key below the level
        ({"QueryRetrieveLevel": "STUDY", "StudyDate": "2026XX01"}, 0xC001),
        ({"QueryRetrieveLevel": "STUDY", "StudyDate": "20261231-20260101"}, 0xC001),
        ({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "not-a-uid"}, 0xC001),
    ],
)
def test_bad_identifiers_get_failure_status_and_association_survives(archive: Hub, listeners, keys, status):
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", listeners.dimse.port, ae_title="RISHUB")
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    responses = list(assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind))
    assert responses[-1][0].Status == status
    good = Dataset()
    good.QueryRetrieveLevel = "STUDY"
    good.PatientID = "P1"
    again = list(assoc.send_c_find(good, StudyRootQueryRetrieveInformationModelFind))
    assert [s.Status for s, _ in again] == [0xFF00, 0x0000]
    assoc.release()


def test_cancel_stops_the_stream(hub: Hub, listeners, tmp_path: Path):
    o = Origin("import")
    for p in write_series(tmp_path / "many", 400, rows=2, cols=2, seed="many"):
        hub.ingest.store(o, p)
    ae = AE(ae_title="PYFIND")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", listeners.dimse.port, ae_title="RISHUB")
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = uid("many", "study")
    ds.SeriesInstanceUID = uid("many", "series")
    ds.SOPInstanceUID = ""
    ds.ImagePositionPatient = ""
    # The hub writes answers straight to the socket; all 400 may be out before the C-CANCEL arrives, and
    # a cancel after the last answer is ignored (PS3.7 9.3.2.3). So: up to five tries, one must stop early.
    outcomes = []
    for attempt in range(5):
        statuses = []
        msg_id = 7 + attempt
        for n, (status, _) in enumerate(assoc.send_c_find(ds, StudyRootQueryRetrieveInformationModelFind,
                                                          msg_id=msg_id)):
            statuses.append(status.Status)
            if n == 0:
                assoc.send_c_cancel(msg_id, query_model=StudyRootQueryRetrieveInformationModelFind)
        assert statuses[-1] in (0xFE00, 0x0000)
        assert statuses[-1] == 0x0000 or len(statuses) < 400  # cancelled: the stream stopped early
        outcomes.append(statuses[-1])
        if statuses[-1] == 0xFE00:
            break
    assoc.release()
    assert 0xFE00 in outcomes, outcomes


def test_specific_character_set_in_and_out(archive: Hub, listeners):
    final, rows = pn_find(listeners.dimse.port, {
        "SpecificCharacterSet": "ISO_IR 100", "QueryRetrieveLevel": "STUDY", "PatientName": "Mül*",
    })
    assert final.Status == 0x0000 and len(rows) == 1
    assert rows[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(rows[0].PatientName) == "Müller^Zoë"
    _, rows = pn_find(listeners.dimse.port, {"QueryRetrieveLevel": "STUDY", "PatientID": "P2", "PatientName": ""})
    assert rows[0].SpecificCharacterSet == "ISO_IR 192"  # the default repertoire cannot hold it
    assert str(rows[0].PatientName) == "Müller^Zoë"


def test_findscu(archive: Hub, listeners):
    findscu = dcmtk("findscu")
    result = subprocess.run(
        [findscu, "-S", "-aec", "RISHUB", "127.0.0.1", str(listeners.dimse.port), "-k", "QueryRetrieveLevel=STUDY",
         "-k", "PatientName=SMITH*", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances"],
        env=dcmtk_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Smith^John" in result.stderr and "NumberOfStudyRelatedInstances" in result.stderr
    assert result.stderr.count("(Pending)") == 1
    bad = subprocess.run(
        [findscu, "-v", "-S", "-aec", "RISHUB", "127.0.0.1", str(listeners.dimse.port), "-k",
         "QueryRetrieveLevel=STUDY", "-k", "StudyDate=yesterday"],
        env=dcmtk_env(), capture_output=True, text=True, timeout=60,
    )
    assert "Received Final Find Response (Failed: UnableToProcess)" in bad.stderr


def _item(**values: str) -> Dataset:
    item = Dataset()
    for k, v in values.items():
        setattr(item, k, v)
    return item


@pytest.mark.parametrize(
    "item,expected",
    [
        ({"CodeValue": "CT-CHEST"}, {"P2"}),
        ({"CodeValue": "CT-CHEST", "CodingSchemeDesignator": "LOCAL"}, {"P2"}),
        ({"CodeValue": "CT-CHEST", "CodingSchemeDesignator": "SCT"}, set()),
        ({"CodeMeaning": "CT*"}, {"P2"}),
        ({"CodeMeaning": "ct*"}, set()),
    ],
)
def test_sequence_matching_at_study_level(archive: Hub, listeners, item: dict, expected: set):
    final, rows = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "STUDY", "PatientID": "", "ProcedureCodeSequence": [_item(**item)],
    })
    assert final.Status == 0x0000
    assert {r.PatientID for r in rows} == expected


def test_sequence_matching_and_return_at_image_level(archive: Hub, listeners):
    final, rows = pn_find(listeners.dimse.port, {
        "QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": uid("b", "study"), "SeriesInstanceUID": "",
        "SOPInstanceUID": "", "RequestAttributesSequence": [_item(RequestedProcedureID="RP42",
                                                                  ScheduledProcedureStepID="")],
    })
    assert final.Status == 0x0000 and len(rows) == 1
    assert rows[0].SOPInstanceUID == uid("b", "mr", 0)
    assert rows[0].RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS7"


def test_search_pages_limit_and_offset(hub: Hub, tmp_path: Path):
    """The query model's keyset paging: every match once, in order; limit and offset honoured."""
    from hub.domain.query import Condition, Match, Query, QueryLevel

    o = Origin("import")
    for p in write_series(tmp_path / "pg", 23, rows=2, cols=2, seed="paging"):
        hub.ingest.store(o, p)
    query = Query(QueryLevel.IMAGE, [Condition("SeriesInstanceUID", Match.SINGLE, uid("paging", "series"))])
    everything = [r["instance_pk"] for r in hub.query.repository.search(query, page=5, first_page=2)]
    assert len(everything) == 23 and everything == sorted(everything)
    limited = Query(QueryLevel.IMAGE, query.conditions, limit=7, offset=4)
    assert [r["instance_pk"] for r in hub.query.repository.search(limited, page=3)] == everything[4:11]
    assert hub.query.count(query) == 23
