"""Golden checks of index records and stored DICOM JSON -> Orthanc 1.10 REST JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from mappings.index_to_orthanc import (
    dataset_to_orthanc,
    element_string,
    expected_instances,
    instance_metadata,
    is_stable,
    orthanc_time,
    parent_metadata,
    resource_to_orthanc,
    series_status,
    shared_tags,
    short_tags,
    simplify_tags,
    statistics_to_orthanc,
    tag_name,
)

NOW = datetime(2026, 1, 2, 3, 4, 5)


def test_times_and_stability():
    assert orthanc_time(NOW) == "20260102T030405"
    assert is_stable(datetime(2026, 1, 2, 3, 3, 5), NOW, 60)
    assert not is_stable(datetime(2026, 1, 2, 3, 3, 6), NOW, 60)


@pytest.mark.parametrize(
    "tags,expected",
    [
        ({}, None),
        ({"ImagesInAcquisition": "10", "NumberOfTemporalPositions": "3"}, 30),
        ({"ImagesInAcquisition": "10"}, None),
        ({"NumberOfSlices": "4", "NumberOfTimeSlices": "2"}, 8),
        ({"CardiacNumberOfImages": "12"}, 12),
        ({"CardiacNumberOfImages": "0"}, None),
        ({"ImagesInAcquisition": "x", "NumberOfTemporalPositions": "3", "CardiacNumberOfImages": "5"}, None),
    ],
)
def test_expected_instances(tags: dict[str, str], expected: int | None):
    assert expected_instances(tags) == expected


@pytest.mark.parametrize(
    "expected,indexes,status",
    [(None, [1, 2], "Unknown"), (3, [1, 2, 3], "Complete"), (3, [3, 1], "Missing"), (3, [1, None], "Unknown"),
     (2, [1, 3], "Inconsistent"), (2, [1, 1], "Inconsistent"), (2, [0], "Inconsistent")],
)
def test_series_status(expected: int | None, indexes: list[int | None], status: str):
    assert series_status(expected, indexes) == status


def record(**extra: Any) -> dict[str, Any]:
    return {"public_id": "id", "main_tags": {"B": "2", "A": "1"}, "updated_at": NOW, "parent_id": "parent",
            "children": ["c1", "c2"], "children_index": ["1", "2"], **extra}


def test_resources_in_orthanc_shape():
    patient = resource_to_orthanc("Patient", record(), NOW, 0)
    assert patient == {"ID": "id", "IsStable": True, "LastUpdate": "20260102T030405",
                       "MainDicomTags": {"A": "1", "B": "2"}, "Studies": ["c1", "c2"], "Type": "Patient"}
    assert list(patient["MainDicomTags"]) == ["A", "B"]
    study = resource_to_orthanc("Study", record(patient_tags={"PatientID": "P"}), NOW, 0)
    assert list(study) == ["ID", "IsStable", "LastUpdate", "MainDicomTags", "ParentPatient", "PatientMainDicomTags",
                           "Series", "Type"]
    assert study["ParentPatient"] == "parent" and study["PatientMainDicomTags"] == {"PatientID": "P"}
    series = resource_to_orthanc("Series", record(main_tags={"CardiacNumberOfImages": "2"}), NOW, 60)
    assert series["ExpectedNumberOfInstances"] == 2 and series["Status"] == "Complete"
    assert series["Instances"] == ["c1", "c2"] and series["ParentStudy"] == "parent"
    instance = resource_to_orthanc("Instance", record(main_tags={"InstanceNumber": " 7 "}, file_size=10,
                                                      blob_key="k"), NOW, 60)
    assert instance == {"FileSize": 10, "FileUuid": "k", "ID": "id", "IndexInSeries": 7,
                        "MainDicomTags": {"InstanceNumber": " 7 "}, "ParentSeries": "parent", "Type": "Instance"}
    assert resource_to_orthanc("Instance", record(main_tags={}, file_size=1, blob_key="k"), NOW, 60)[
        "IndexInSeries"] is None


def test_statistics_keys_per_level():
    counts = {"size": 3 * 1024 * 1024 + 5, "instances": 4, "series": 2, "studies": 1}
    patient = statistics_to_orthanc("Patient", counts)
    assert patient["CountStudies"] == 1 and patient["DiskSize"] == "3145733" and patient["DiskSizeMB"] == 3
    assert list(patient) == sorted(patient)
    assert "CountStudies" not in statistics_to_orthanc("Study", counts)
    assert set(statistics_to_orthanc("Series", counts)) - set(statistics_to_orthanc("Instance", counts)) == {
        "CountInstances"}
    assert set(statistics_to_orthanc("Instance", {"size": 1})) == {
        "DicomDiskSize", "DicomDiskSizeMB", "DicomUncompressedSize", "DicomUncompressedSizeMB", "DiskSize",
        "DiskSizeMB", "UncompressedSize", "UncompressedSizeMB"}


def origin_row(protocol: str, **extra: Any) -> dict[str, Any]:
    row = {"main_tags": {"InstanceNumber": "3"}, "received_at": NOW, "origin_protocol": protocol,
           "origin_remote_aet": None, "origin_remote_ip": None, "origin_called_aet": None, "origin_user": None,
           "transfer_syntax_uid": "1.2.840.10008.1.2.1", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
           "pixel_data_offset": 1000}
    return {**row, **extra}


def test_instance_metadata_by_origin():
    dimse = instance_metadata(origin_row("dimse", origin_remote_aet="CT1", origin_remote_ip="10.0.0.1",
                                         origin_called_aet="RISHUB"))
    assert list(dimse) == ["IndexInSeries", "ReceptionDate", "RemoteAET", "Origin", "TransferSyntax", "SopClassUid",
                           "RemoteIP", "CalledAET", "PixelDataOffset"]
    assert dimse["Origin"] == "DicomProtocol" and dimse["RemoteAET"] == "CT1" and dimse["PixelDataOffset"] == "1000"
    rest = instance_metadata(origin_row("rest", origin_remote_ip="127.0.0.1", origin_user="admin"))
    assert rest["Origin"] == "RestApi" and rest["RemoteAET"] == "" and rest["HttpUsername"] == "admin"
    assert "CalledAET" not in rest
    other = instance_metadata(origin_row("import", main_tags={"ImageIndex": "4"}, pixel_data_offset=None))
    assert other["Origin"] == "Unknown" and other["IndexInSeries"] == "4"
    assert set(other) == {"IndexInSeries", "ReceptionDate", "RemoteAET", "Origin", "TransferSyntax", "SopClassUid"}
    assert instance_metadata(origin_row("dicomweb"))["Origin"] == "Plugins"


def test_parent_metadata():
    series = parent_metadata("Series", {"updated_at": NOW, "main_tags": {"CardiacNumberOfImages": "3"},
                                        "first_remote_aet": "MOD"})
    assert series == {"RemoteAET": "MOD", "ExpectedNumberOfInstances": "3", "LastUpdate": "20260102T030405"}
    assert parent_metadata("Study", {"updated_at": NOW, "main_tags": {}}) == {"LastUpdate": "20260102T030405"}


@pytest.mark.parametrize(
    "element,text",
    [
        ({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]}, "Yamada^Tarou=山田^太郎"),
        ({"vr": "PN", "Value": [{"Alphabetic": "A"}, {"Alphabetic": "B"}]}, "A\\B"),
        ({"vr": "CS", "Value": ["ORIGINAL", "PRIMARY"]}, "ORIGINAL\\PRIMARY"),
        ({"vr": "DS", "Value": [5, 0.661468, -1024]}, "5\\0.661468\\-1024"),
        ({"vr": "DS", "Value": [2.0]}, "2"),
        ({"vr": "IS", "Value": [1601]}, "1601"),
        ({"vr": "FL", "Value": [-11.199999809265137]}, "-11.199999809265137"),
        ({"vr": "FD", "Value": [862399761.111079]}, "862399761.11107898"),
        ({"vr": "FL", "Value": [0.0]}, "0"),
        ({"vr": "US", "Value": [0, 1, 1]}, "0\\1\\1"),
        ({"vr": "AT", "Value": ["3004000C"]}, "3004,000c"),
        ({"vr": "LO", "Value": ["A", None]}, "A\\"),
        ({"vr": "SH"}, ""),
        ({"vr": "OB", "InlineBinary": "AAAA"}, None),
        ({"vr": "OW", "BulkDataURI": "bulk/7FE00010"}, None),
        ({"vr": "UN"}, None),
        ({"vr": "SQ", "Value": []}, None),
    ],
)
def test_element_strings(element: dict[str, Any], text: str | None):
    assert element_string(element) == text


def test_names():
    ds = {"00090010": {"vr": "LO", "Value": ["GEMS_IDEN_01"]}, "00191002": {"vr": "SL", "Value": [1]}}
    assert tag_name("00100010", ds) == "PatientName"
    assert tag_name("00101000", ds) == "OtherPatientIDs"
    assert tag_name("00080040", ds) == "RETIRED_DataSetType"
    assert tag_name("00090010", ds) == "PrivateCreator"
    assert tag_name("00091001", ds) == "FullFidelity"
    assert tag_name("00191002", ds) == "Unknown Tag & Data"  # no creator element in the data set
    assert tag_name("00990010", ds) == "PrivateCreator"


def test_full_format_with_sequences_private_tags_and_long_values():
    ds = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
        "00091001": {"vr": "LO", "Value": ["GE_GENESIS_FF"]},
        "00090010": {"vr": "LO", "Value": ["GEMS_IDEN_01"]},
        "00101002": {"vr": "SQ", "Value": [{"00100020": {"vr": "LO", "Value": ["X"]}}]},
        "00081030": {"vr": "LO", "Value": ["x" * 257]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
    }
    full = dataset_to_orthanc(ds)
    assert list(full) == ["0008,1030", "0009,0010", "0009,1001", "0010,0010", "0010,1002", "7fe0,0010"]
    assert full["0009,1001"] == {"Name": "FullFidelity", "PrivateCreator": "GEMS_IDEN_01", "Type": "String",
                                 "Value": "GE_GENESIS_FF"}
    assert full["0008,1030"] == {"Name": "StudyDescription", "Type": "TooLong", "Value": None}
    assert full["7fe0,0010"] == {"Name": "PixelData", "Type": "Null", "Value": None}
    assert full["0010,1002"]["Value"] == [{"0010,0020": {"Name": "PatientID", "Type": "String", "Value": "X"}}]
    assert short_tags(full)["0010,1002"] == [{"0010,0020": "X"}]
    assert simplify_tags(full)["OtherPatientIDsSequence"] == [{"PatientID": "X"}]
    assert list(simplify_tags(full)) == sorted(simplify_tags(full))


def test_shared_tags_keep_the_equal_strings():
    a = {"00100020": {"vr": "LO", "Value": ["P1"]}, "00200013": {"vr": "IS", "Value": [1]},
         "00180050": {"vr": "DS", "Value": [5]}, "00080050": {"vr": "SH"},
         "00101002": {"vr": "SQ", "Value": []}, "7FE00010": {"vr": "OW", "BulkDataURI": "b"}}
    b = {**a, "00200013": {"vr": "IS", "Value": [2]}}
    shared = shared_tags([(a, {"InstanceNumber": "1"}), (b, {"InstanceNumber": "2"})])
    assert list(shared) == ["0008,0050", "0010,0020", "0018,0050"]
    assert shared["0008,0050"] == {"Name": "AccessionNumber", "Type": "String", "Value": ""}
    # the exact strings kept at ingest (MainDicomTags of the instance) win over the JSON numbers
    one = shared_tags([(a, {"InstanceNumber": "0001"})])
    assert one["0020,0013"]["Value"] == "0001"
    assert shared_tags([]) == {}
