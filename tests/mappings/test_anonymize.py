"""PS3.15 Annex E basic profile as Orthanc 1.10 applies it: the profile data, the request body and
:func:`dataset_to_anonymized`."""

from __future__ import annotations

import itertools
import re

import pydicom
import pytest
from pydicom.datadict import dictionary_has_tag, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mappings.anonymize import (
    DEFAULT_VERSION,
    PROFILES,
    body_to_anonymization,
    dataset_to_anonymized,
    deidentification_method,
)
from mappings.modify import IdentifierMap, ModifyError, check_modification
from tests.conftest import TEST_FILES

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def names() -> itertools.count:
    return itertools.count(1)


def anonymized(body: dict | None = None, ds: Dataset | None = None, ids: IdentifierMap | None = None) -> Dataset:
    counter = names()
    mod = body_to_anonymization(body or {}, lambda: f"Anonymized{next(counter)}")
    check_modification(mod)
    return dataset_to_anonymized(ds if ds is not None else pydicom.dcmread(TEST_FILES / "CT_small.dcm"), mod,
                                 ids or IdentifierMap())


@pytest.mark.parametrize("version", sorted(PROFILES))
def test_profile_tables_are_consistent(version: str) -> None:
    p = PROFILES[version]
    assert not (p.clear & p.remove or p.clear & p.uids or p.remove & p.uids)
    assert all(dictionary_has_tag(t) for t in p.clear | p.remove | p.uids)
    assert all(dictionary_has_tag(t) and "UID" in keyword_for_tag(t) for t in p.uids)


def test_2021b_table_entries() -> None:
    """A sample of Table E.1-1 (2021b): Z/D -> empty, X -> removed, U -> new UID."""
    p = PROFILES["2021b"]
    assert {0x00080020, 0x00080050, 0x00100030, 0x00100040, 0x00200010, 0x0040A730} <= p.clear
    assert {0x00080080, 0x00081030, 0x0008103E, 0x00101010, 0x00101002, 0x00080201, 0xFFFCFFFC} <= p.remove
    assert {0x00200052, 0x00081155, 0x00080014, 0x00181002} <= p.uids
    assert (0x6000, 0x60FF, 0x3000, 0x3000) in p.ranges
    assert DEFAULT_VERSION == "2021b"


def test_ct_small_as_orthanc_anonymizes_it() -> None:
    orig = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds = anonymized()
    for kw in ("StudyDate", "StudyTime", "ContentDate", "ContentTime", "PatientSex", "StudyID", "ContrastBolusAgent"):
        assert kw in orig and ds[kw].value == "", kw
    for kw in ("SeriesDate", "AcquisitionTime", "InstitutionName", "StationName", "StudyDescription",
               "OtherPatientIDsSequence", "PatientAge", "PatientWeight", "ImageComments", "TimezoneOffsetFromUTC"):
        assert kw in orig and kw not in ds, kw
    assert not [e for e in ds if e.tag.is_private] and 0xFFFCFFFC not in ds
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "InstanceCreatorUID"):
        assert ds[kw].value != orig[kw].value, kw
    assert UUID.match(ds.PatientID) and ds.PatientName == "Anonymized1"
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == deidentification_method("2021b")
    assert ds.DeidentificationMethod.endswith(" - PS 3.15-2021b Table E.1-1 Basic Profile")
    assert ds.Modality == orig.Modality and ds.PixelData == orig.PixelData  # K / unlisted: kept


def test_older_editions() -> None:
    ds = anonymized({"DicomVersion": "2008"})
    assert "PatientSex" not in ds and "StudyDate" in ds and ds.StudyDate == "20040119"  # 2008: X, no Z
    assert ds.DeidentificationMethod.endswith(" - PS 3.15-2008 Table E.1-1")
    ds = anonymized({"DicomVersion": "2017c"})
    assert ds.PatientSex == "" and ds.DeidentificationMethod.endswith("PS 3.15-2017c Table E.1-1 Basic Profile")


@pytest.mark.parametrize(("body", "status", "details"), [
    ("x", 15, None),
    ({"DicomVersion": 2021}, 15, None),
    ({"DicomVersion": "2023b"}, 3, "Unknown specific version of the DICOM standard: 2023b"),
    ({"KeepPrivateTags": 1}, 15, 'Member "KeepPrivateTags" should be a Boolean value'),
    ({"Replace": {"PatientID": "X"}}, 8, "requires the \"Force\" option"),
    ({"Keep": ["PatientID"], "Force": True}, 8, "When modifying a patient, her PatientID is required"),
])
def test_refusals(body: object, status: int, details: str | None) -> None:
    with pytest.raises(ModifyError) as info:
        check_modification(body_to_anonymization(body, lambda: "Anonymized1"))
    assert info.value.orthanc_status == status
    assert info.value.details is None if details is None else details in info.value.details


def test_patient_name_counter_is_used_only_when_needed() -> None:
    calls: list[int] = []
    body_to_anonymization({"Replace": {"PatientName": "X"}}, lambda: str(calls.append(1)))
    body_to_anonymization({"Keep": ["PatientName"]}, lambda: str(calls.append(1)))
    assert calls == []
    with pytest.raises(ModifyError):
        body_to_anonymization({"DicomVersion": "1999"}, lambda: str(calls.append(1)))
    assert calls == []


def test_keep_replace_and_private_tags_drop_the_profile_claim() -> None:
    ds = anonymized({"Keep": ["StudyDescription"], "KeepPrivateTags": True, "Replace": {"PatientName": "P"}})
    assert ds.StudyDescription == "e+1" and ds.PatientName == "P" and 0x00091001 in ds
    assert "DeidentificationMethod" not in ds and ds.PatientIdentityRemoved == "YES"
    assert "DeidentificationMethod" not in anonymized({"KeepPrivateTags": True})
    assert "DeidentificationMethod" in anonymized({"KeepPrivateTags": False})


def series(n: int = 2) -> list[Dataset]:
    out = []
    for i in range(n):
        ds = Dataset()
        ds.PatientID, ds.PatientName = "P1", "DOE^JOHN"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.1", "1.2.1.1", f"1.2.1.1.{i}"
        ds.FrameOfReferenceUID, ds.InstanceNumber = "1.2.9", i + 1
        out.append(ds)
    ref = Dataset()
    ref.ReferencedSOPInstanceUID, ref.StudyInstanceUID, ref.FrameOfReferenceUID = "1.2.1.1.0", "1.2.1", "1.2.9"
    ref.StudyDate, ref.InstitutionName, ref.PatientName = "20200101", "NESTED", "NESTED^NAME"
    ref.add_new(0x00291010, "LO", "private")
    ref.ContentSequence = Sequence([Dataset()])
    out[1].ReferencedImageSequence = Sequence([ref])
    return out


def test_identifiers_and_references_are_consistent_over_an_operation() -> None:
    ids = IdentifierMap()
    counter = names()
    mod = body_to_anonymization({}, lambda: f"Anonymized{next(counter)}")
    a, b = (dataset_to_anonymized(ds, mod, ids) for ds in series())
    assert a.PatientID == b.PatientID and UUID.match(a.PatientID) and a.PatientName == b.PatientName == "Anonymized1"
    assert a.StudyInstanceUID == b.StudyInstanceUID != "1.2.1" and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != "1.2.9" and a.SOPInstanceUID != b.SOPInstanceUID
    ref = b.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert ref.StudyInstanceUID == a.StudyInstanceUID and ref.FrameOfReferenceUID == a.FrameOfReferenceUID
    assert ref.StudyDate == "" and "InstitutionName" not in ref and 0x00291010 not in ref
    assert "ContentSequence" not in ref  # a cleared sequence inside a sequence goes
    assert ref.PatientName == "NESTED^NAME"  # PatientName is replaced, not mapped (as Orthanc)


def test_replaced_study_uid_is_followed_by_references() -> None:
    first, second = series()
    ids = IdentifierMap()
    mod = body_to_anonymization({"Replace": {"StudyInstanceUID": "9.9.9"}, "Force": True}, lambda: "Anonymized1")
    dataset_to_anonymized(first, mod, ids)
    dataset_to_anonymized(second, mod, ids)
    assert first.StudyInstanceUID == second.ReferencedImageSequence[0].StudyInstanceUID == "9.9.9"


def test_keep_path_protects_a_sequence() -> None:
    ds = anonymized({"Keep": ["ReferencedImageSequence"]}, series()[1])
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == "1.2.1.1.0" and ref.InstitutionName == "NESTED" and 0x00291010 in ref


def test_rt_structure_set_reference_to_a_study() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.1"
    study = Dataset()
    study.ReferencedSOPInstanceUID = "1.2.1"  # names the study (RT Structure Set)
    frame = Dataset()
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds = anonymized({}, ds)
    assert ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].ReferencedSOPInstanceUID \
        == ds.StudyInstanceUID != "1.2.1"
