"""Orthanc ``/modify`` bodies -> Modification, and a Modification applied to a data set (Orthanc 1.10
``DicomModification``)."""

from __future__ import annotations

import itertools

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mappings.modify import (
    IdentifierMap,
    ModifyError,
    TagPath,
    body_to_modification,
    check_modification,
    dataset_to_modified,
    detect_level,
    parse_path,
    parse_tag,
)
from tests.conftest import TEST_FILES


def counting_ids() -> IdentifierMap:
    n = itertools.count(1)
    return IdentifierMap(new_uid=lambda: f"2.25.{next(n)}", new_patient_id=lambda: f"patient-{next(n)}")


def ct() -> Dataset:
    return pydicom.dcmread(TEST_FILES / "CT_small.dcm")


def modified(body: dict, level: str | None = "Study", ds: Dataset | None = None,
             ids: IdentifierMap | None = None) -> Dataset:
    mod = body_to_modification(body, level)
    check_modification(mod)
    return dataset_to_modified(ds if ds is not None else ct(), mod, ids or counting_ids())


def refusal(body: object, level: str | None = "Study") -> ModifyError:
    with pytest.raises(ModifyError) as info:
        check_modification(body_to_modification(body, level))
    return info.value


@pytest.mark.parametrize("name", ["PatientName", "0010,0010", "0010-0010", "00100010", "(0010,0010)", " PatientName "])
def test_tag_names(name: str) -> None:
    assert parse_tag(name) == 0x00100010


def test_unknown_tag_name() -> None:
    with pytest.raises(ModifyError) as info:
        parse_tag("NoSuchKeyword")
    assert (info.value.orthanc_status, info.value.http_status) == (27, 400)


def test_paths() -> None:
    assert parse_path("PatientName") == TagPath((), 0x00100010)
    assert parse_path("ReferencedImageSequence[1].ReferencedSOPInstanceUID") == TagPath(((0x00081140, 1),), 0x00081155)
    assert parse_path("(0008,1140)[*].0008,1155") == TagPath(((0x00081140, None),), 0x00081155)
    for bad, why in [("Seq.Tag", "index"), ("[0].PatientID", "tag"), ("OtherPatientIDsSequence[0.PatientID", "end"),
                     ("OtherPatientIDsSequence[x].PatientID", "valid")]:
        with pytest.raises(ModifyError) as info:
            parse_path(bad)
        assert info.value.orthanc_status == 3 and why in info.value.details


@pytest.mark.parametrize(("body", "status", "details"), [
    ([], 15, None),
    ({"Force": "yes"}, 15, 'Member "Force" should be a Boolean value'),
    ({"Replace": {"PatientID": "X"}}, 8, 'Marking tag "PatientID" as to be replaced requires the "Force" option'),
    ({"Remove": ["SOPInstanceUID"]}, 8, 'Marking tag "SOPInstanceUID" as to be removed requires'),
    ({"Keep": ["StudyInstanceUID"]}, 8, 'Marking tag "StudyInstanceUID" as to be kept requires'),
    ({"Replace": ["x"]}, 8, None),
    ({"Remove": [1]}, 8, None),
    ({"PrivateCreator": 3}, 15, "String value expected in field: PrivateCreator"),
    ({"Remove": ["PatientID"], "Force": True}, 8, None),
    ({"Replace": {"PatientID": "X"}, "Force": True}, 8, "When modifying a study, the parent PatientID cannot"),
    ({"Replace": {"StudyDescription": 7}}, 5, "Bad Parameter type for tag 0008,1030"),
    ({"Replace": {"Rows": "abc"}}, 15, 'tag (0028,0010) has out-of-range value: "abc"'),
    ({"Replace": {"Rows": "70000"}}, 15, "out-of-range"),
    ({"Replace": {"ReferencedStudySequence": "x"}}, 15, "out-of-range"),
    ({"Replace": {"ReferencedStudySequence": [1]}}, 5, "Bad Parameter type"),
    ({"Replace": {"PixelData": "x"}}, 8, "PixelData"),
])
def test_refusals(body: object, status: int, details: str | None) -> None:
    err = refusal(body)
    assert err.orthanc_status == status and err.http_status == 400
    assert (err.details is None) if details is None else details in err.details


@pytest.mark.parametrize(("level", "body", "details"), [
    ("Patient", {}, "When modifying a patient, her PatientID is required to be modified"),
    ("Series", {"Replace": {"PatientID": "X"}, "Force": True}, "When modifying a series, the parent PatientID"),
    ("Series", {"Replace": {"StudyInstanceUID": "1.2"}, "Force": True}, "the parent StudyInstanceUID cannot"),
])
def test_level_rules(level: str, body: dict, details: str) -> None:
    assert details in refusal(body, level).details


def test_instance_route_level_follows_the_identifiers_replaced() -> None:
    for replace, level in [({}, "Instance"), ({"SeriesInstanceUID": "1"}, "Series"),
                           ({"StudyInstanceUID": "1", "SeriesInstanceUID": "1"}, "Study"),
                           ({"PatientID": "P"}, "Patient")]:
        mod = body_to_modification({"Replace": replace, "Force": True}, None)
        assert detect_level(mod) == mod.level == level
        check_modification(mod)


def test_replace_remove_keep_and_empty_values() -> None:
    ds = modified({"Replace": {"StudyDescription": "NEW", "PatientComments": "inserted", "InstitutionName": None,
                               "ImageType": "DERIVED\\SECONDARY", "Rows": "12", "PatientWeight": "72.5"},
                   "Remove": ["SeriesDescription", "StudyID", "0009,1001"], "Keep": ["StudyID"]})
    assert ds.StudyDescription == "NEW" and ds.PatientComments == "inserted" and ds.InstitutionName == ""
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.Rows == 12 and float(ds.PatientWeight) == 72.5
    assert "SeriesDescription" not in ds and 0x00091001 not in ds
    assert ds.StudyID == "1CT1"  # Keep, last, cancels the removal


def test_replace_wins_over_remove_of_the_same_tag() -> None:
    assert modified({"Remove": ["StudyDescription"], "Replace": {"StudyDescription": "A"}}).StudyDescription == "A"


def test_new_identifiers_for_the_level_and_below() -> None:
    orig = ct()
    for level, changed in [("Instance", {"SOPInstanceUID"}), ("Series", {"SOPInstanceUID", "SeriesInstanceUID"}),
                           ("Study", {"SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"})]:
        ds = modified({}, level)
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert (ds[kw].value != orig[kw].value) == (kw in changed), (level, kw)
        assert ds.PatientID == orig.PatientID and ds.FrameOfReferenceUID == orig.FrameOfReferenceUID


def test_one_new_uid_per_old_uid_over_an_operation() -> None:
    ids = counting_ids()
    a, b = modified({}, "Study", ids=ids), modified({}, "Study", ids=ids)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID == b.SOPInstanceUID  # same source instance, same new UID
    c = modified({}, "Study")
    assert c.StudyInstanceUID == a.StudyInstanceUID  # the counting generator restarts: shape only


def test_forced_identifiers_and_keep() -> None:
    ds = modified({"Replace": {"StudyInstanceUID": "1.2.3"}, "Keep": ["SeriesInstanceUID"], "Force": True}, "Study")
    assert ds.StudyInstanceUID == "1.2.3" and ds.SeriesInstanceUID == ct().SeriesInstanceUID
    assert ds.SOPInstanceUID != ct().SOPInstanceUID
    ds = modified({"Replace": {"PatientID": "NEW"}, "Force": True}, "Patient")
    assert ds.PatientID == "NEW" and ds.StudyInstanceUID != ct().StudyInstanceUID


def test_private_tags() -> None:
    ds = modified({"RemovePrivateTags": True, "Keep": ["0009,1001"]})
    assert 0x00091001 in ds and not [e for e in ds if e.tag.is_private and e.tag != 0x00091001]
    ds = modified({"Replace": {"0009,1001": "x", "0099,1001": "hello"}})
    assert (ds[0x00091001].VR, ds[0x00091001].value) == ("LO", "x")  # the existing private element's VR
    assert (ds[0x00991001].VR, ds[0x00991001].value) == ("UN", b"hello\0")  # unknown: UN, padded


def test_sequences_and_paths() -> None:
    ds = modified({"Replace": {"ReferencedStudySequence": [{"ReferencedSOPClassUID": "1.2",
                                                            "ReferencedSOPInstanceUID": "1.3"}],
                               "OtherPatientIDsSequence[*].TypeOfPatientID": "RFID",
                               "OtherPatientIDsSequence[5].PatientID": "ignored"},
                   "Remove": ["OtherPatientIDsSequence[0].PatientID"]})
    assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID == "1.3"
    items = ds.OtherPatientIDsSequence
    assert [i.TypeOfPatientID for i in items] == ["RFID", "RFID"]
    assert "PatientID" not in items[0] and items[1].PatientID == "1234ABCD"


def test_data_uri_and_character_set() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2"
    ds = modified({"Replace": {"PatientComments": "data:text/plain;base64,SMOpbGzDtg==", "PatientName": "Jérôme"}},
                  "Instance", ds)
    assert ds.PatientComments == "Héllö" and ds.SpecificCharacterSet == "ISO_IR 100"
    ds = Dataset()
    ds = modified({"Replace": {"PatientName": "山田"}}, "Instance", ds)
    assert ds.SpecificCharacterSet == "ISO_IR 192"


def test_sequence_replacement_inside_items_keeps_other_items() -> None:
    ds = Dataset()
    ds.ReferencedImageSequence = Sequence([Dataset(), Dataset()])
    ds = modified({"Replace": {"ReferencedImageSequence[1].ReferencedSOPInstanceUID": "9.9"}}, "Instance", ds)
    assert "ReferencedSOPInstanceUID" not in ds.ReferencedImageSequence[0]
    assert ds.ReferencedImageSequence[1].ReferencedSOPInstanceUID == "9.9"
