"""Index main tags -> ZIP member names, Orthanc 1.10 rules (ArchiveJob.cpp, HierarchicalZipWriter.cpp)."""

import pytest

from mappings.index_to_archive_names import (
    folder_name,
    index_to_archive_names,
    index_to_media_names,
    instance_file_name,
    keep_alphanumeric,
    media_file_id,
    to_ascii,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1CT1 CompressedSamples^CT1", "1CT1 CompressedSamples CT1"),
        ("Last^First^mid^pre", "Last First mid pre"),
        ("  CT-CHEST  (w/o)  ", "CTCHEST wo"),  # '-', '(', '/' dropped; runs of spaces become one
        ("a - b", "a b"),  # a dropped character does not end a run of spaces
        ("a\t\n b", "a b"),
        ("e+1", "e1"),
        ("AXIAL 1.25_x", "AXIAL 1.25_x"),
        ("Müller^Jörg", "Mller Jrg"),
        ("^^^", ""),
        ("", ""),
    ],
)
def test_keep_alphanumeric(raw: str, expected: str):
    assert keep_alphanumeric(raw) == expected


def test_to_ascii_drops_controls_and_non_ascii():
    assert to_ascii("A\x01B\x7fC\u00e9D\u4e2d ") == "ABCD "


@pytest.mark.parametrize(
    ("level", "tags", "expected"),
    [
        ("Patient", {"PatientID": "1CT1", "PatientName": "CompressedSamples^CT1"}, "1CT1 CompressedSamples^CT1"),
        ("Patient", {"PatientID": "", "PatientName": ""}, "Unknown Patient"),
        ("Patient", {"PatientName": "\u00c9"}, "Unknown Patient"),  # nothing ASCII left
        ("Study", {"AccessionNumber": "", "StudyDescription": "e+1"}, "e+1"),
        ("Study", {}, "Unknown Study"),
        ("Study", {"AccessionNumber": "ACC1", "StudyDescription": "CT CHEST"}, "ACC1 CT CHEST"),
        ("Series", {"Modality": "CT", "SeriesDescription": "AXIAL 1.25", "SeriesNumber": "2"}, "CT AXIAL 1.25"),
        ("Series", {"Modality": "MR"}, "MR"),
        ("Series", {"SeriesDescription": "  "}, "Unknown Series"),
        ("Patient", {"PatientID": "^", "PatientName": ""}, "^"),  # not empty yet: keep_alphanumeric empties it
    ],
)
def test_folder_name(level: str, tags: dict[str, str], expected: str):
    assert folder_name(level, tags) == expected


def test_folder_name_needs_a_folder_level():
    with pytest.raises(ValueError):
        folder_name("Instance", {})


@pytest.mark.parametrize(
    ("modality", "counter", "expected"),
    [
        ("CT", 0, "CT000000.dcm"),
        ("ct", 12, "CT000012.dcm"),
        ("RTPLAN", 3, "RT000003.dcm"),
        ("X", 5, "X0000005.dcm"),
        ("", 7, "00000007.dcm"),
        ("MR", 1234567, "MR1234567.dcm"),
        ("\u00e9", 1, "\x80\x80000001.dcm"),  # two UTF-8 bytes, dropped later by keep_alphanumeric
    ],
)
def test_instance_file_name(modality: str, counter: int, expected: str):
    assert instance_file_name(modality, counter) == expected


def test_archive_names_walk_and_make_names_unique():
    ct = {"Modality": "CT", "SeriesDescription": "AXIAL"}
    patients = [
        ({"PatientID": "P1", "PatientName": "DOE^JOHN"}, [
            ({"AccessionNumber": "A1", "StudyDescription": "CT CHEST"}, [(ct, 2), (ct, 1), ({"Modality": "SR"}, 1)]),
            ({"AccessionNumber": "A1", "StudyDescription": "CT-CHEST"}, [({}, 1)]),  # same folder name: "-2"
        ]),
        ({"PatientID": "P1", "PatientName": "DOE JOHN"}, [({}, [({"Modality": "é"}, 1)])]),
    ]
    assert index_to_archive_names(patients) == [
        "P1 DOE JOHN/A1 CT CHEST/CT AXIAL/CT000000.dcm",
        "P1 DOE JOHN/A1 CT CHEST/CT AXIAL/CT000001.dcm",
        "P1 DOE JOHN/A1 CT CHEST/CT AXIAL-2/CT000000.dcm",
        "P1 DOE JOHN/A1 CT CHEST/SR/SR000000.dcm",
        "P1 DOE JOHN/A1 CTCHEST/Unknown Series/00000000.dcm",
        "P1 DOE JOHN-2/Unknown Study/Unknown Series/000000.dcm",
    ]


def test_archive_of_nothing():
    assert index_to_archive_names([]) == []


def test_media_names_and_file_ids():
    assert index_to_media_names(3) == ["IMAGES/IM0", "IMAGES/IM1", "IMAGES/IM2"]
    assert media_file_id("IMAGES/IM12") == ["IMAGES", "IM12"]
    assert all(len(part) <= 8 for name in index_to_media_names(100000) for part in media_file_id(name))
