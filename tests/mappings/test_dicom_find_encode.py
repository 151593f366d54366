"""The byte writer of C-FIND identifiers gives the same elements as the pydicom Dataset path."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.dsutils import encode

from hub.domain.query import QueryLevel
from mappings.dicom_find_encode import record_to_identifier_bytes
from mappings.dicom_query import record_to_identifier

STUDY_KEYS = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
              "RetrieveAETitle", "InstanceAvailability", "ProcedureCodeSequence", "IssuerOfPatientID"]

STUDY_RECORD: dict[str, Any] = {
    "tags": {"PatientName": "DOE^JOHN", "PatientID": "PID1", "PatientBirthDate": "19700101", "PatientSex": "M",
             "StudyInstanceUID": "1.2.826.0.1.3680043.10.1419.1", "StudyDate": "20240101", "StudyTime": "101010",
             "AccessionNumber": "ACC1", "StudyID": "7", "StudyDescription": "CT HEAD", "ReferringPhysicianName": ""},
    "computed": {"ModalitiesInStudy": "CT\\SR", "NumberOfStudyRelatedSeries": 3,
                 "NumberOfStudyRelatedInstances": 301, "RetrieveAETitle": "RISHUB", "InstanceAvailability": "ONLINE"},
}

IMAGE_RECORD: dict[str, Any] = {
    "tags": {"SOPInstanceUID": "1.2.3.4.5", "InstanceNumber": "12", "StudyInstanceUID": "1.2.3",
             "SeriesInstanceUID": "1.2.3.4"},
    "computed": {},
    "metadata": {
        "00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]},
        "00200013": {"vr": "IS", "Value": [12]},
        "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
        "00180050": {"vr": "DS", "Value": [1.25]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "WHO^DOC"}]},
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
    },
}
IMAGE_KEYS = ["SOPInstanceUID", "InstanceNumber", "PixelSpacing", "SliceThickness", "ReferringPhysicianName",
              "ImageType", "StudyInstanceUID", "SeriesInstanceUID"]


def _decoded(data: bytes, implicit: bool) -> dict[int, Any]:
    ds = read_dataset(BytesIO(data), implicit, True)
    return {int(e.tag): (str(e.value) if e.VR != "SQ" else len(e.value)) for e in ds}


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize(
    ("record", "keys", "level"),
    [(STUDY_RECORD, STUDY_KEYS, QueryLevel.STUDY), (IMAGE_RECORD, IMAGE_KEYS, QueryLevel.IMAGE)],
)
def test_same_elements_as_dataset_path(record: dict[str, Any], keys: list[str], level: QueryLevel,
                                       implicit: bool) -> None:
    fast = record_to_identifier_bytes(record, keys, level, implicit=implicit)
    assert fast is not None
    slow = encode(record_to_identifier(record, keys, level), implicit, True)
    assert _decoded(fast, implicit) == _decoded(slow, implicit)
    assert len(fast) % 2 == 0


def test_values_are_padded_and_in_tag_order() -> None:
    data = record_to_identifier_bytes(STUDY_RECORD, STUDY_KEYS, QueryLevel.STUDY, implicit=False)
    assert data is not None
    ds = read_dataset(BytesIO(data), False, True)
    tags = [int(e.tag) for e in ds]
    assert tags == sorted(tags)
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.ModalitiesInStudy == ["CT", "SR"]
    assert ds.NumberOfStudyRelatedInstances == 301
    assert b"1.2.826.0.1.3680043.10.1419.1\x00" in data  # odd-length UI padded with NUL
    assert b"DOE^JOHN" in data


def test_non_ascii_values_take_the_dataset_path() -> None:
    record = {"tags": {"PatientName": "MÜLLER^JÖRG"}, "computed": {}}
    assert record_to_identifier_bytes(record, ["PatientName"], QueryLevel.PATIENT, implicit=True) is None


def test_binary_vr_takes_the_dataset_path() -> None:
    record = {"tags": {}, "computed": {}, "metadata": {"00280010": {"vr": "US", "Value": [512]}}}
    assert record_to_identifier_bytes(record, ["Rows"], QueryLevel.IMAGE, implicit=True) is None


def test_unknown_keyword_is_not_returned() -> None:
    record = {"tags": {"PatientID": "X"}, "computed": {}}
    data = record_to_identifier_bytes(record, ["PatientID", "NoSuchKeyword"], QueryLevel.PATIENT, implicit=True)
    assert data is not None
    assert set(_decoded(data, True)) == {0x00080052, 0x00100020}


def test_sequence_with_items_takes_the_dataset_path() -> None:
    item = {"00400009": {"vr": "SH", "Value": ["SPS7"]}}
    record = {"tags": {}, "computed": {}, "metadata": {"00400275": {"vr": "SQ", "Value": [item]}}}
    assert record_to_identifier_bytes(record, ["RequestAttributesSequence"], QueryLevel.IMAGE, implicit=True) is None
