"""Golden checks of the pure DICOM -> index and DICOM -> DICOM JSON mappings."""

import pydicom
import pytest

from mappings.dicom_json import dataset_to_dicom_json
from mappings.dicom_to_index import (
    dataset_to_index,
    missing_uids,
    normalize_date,
    normalize_name,
    normalize_time,
)
from tests.conftest import TEST_FILES


def test_ct_small_index_record():
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    rec = dataset_to_index(ds, "1.2.840.10008.1.2.1")
    assert rec.patient["patient_id"] == "1CT1"
    assert rec.patient["patient_name_norm"] == "COMPRESSEDSAMPLES^CT1"
    assert rec.study["study_date"] == "20040119"
    assert rec.study["study_time"] == "072730.000000"
    assert rec.series["modality"] == "CT"
    assert rec.instance["instance_number"] == 1
    assert rec.instance["number_of_frames"] == 1
    assert rec.series_tags["Modality"] == "CT"
    assert rec.instance_tags["ImagePositionPatient"] == "-158.135803\\-179.035797\\-75.699997"
    assert rec.patient_tags == {
        "PatientName": "CompressedSamples^CT1", "PatientID": "1CT1", "PatientBirthDate": "", "PatientSex": "O",
    }
    assert missing_uids(ds) == []


@pytest.mark.parametrize(
    "raw,expected",
    [("20240131", "20240131"), ("2024.01.31", "20240131"), ("2024", None), ("", None), (None, None)],
)
def test_normalize_date(raw, expected):
    assert normalize_date(raw) == expected


@pytest.mark.parametrize(
    "raw,expected",
    [("07", "070000.000000"), ("0730", "073000.000000"), ("073015.5", "073015.500000"),
     ("07:30:15", "073015.000000"), ("7x", None)],
)
def test_normalize_time(raw, expected):
    assert normalize_time(raw) == expected


def test_normalize_name_is_case_and_accent_insensitive():
    assert normalize_name("Müller^Zoë") == "MULLER^ZOE"
    assert normalize_name("smith^john ") == "SMITH^JOHN"


def test_dicom_json_references_bulk_data():
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    out = dataset_to_dicom_json(ds, "OW")
    assert out["7FE00010"] == {"vr": "OW", "BulkDataURI": "bulk/7FE00010"}
    assert out["00080060"] == {"vr": "CS", "Value": ["CT"]}
    no_pixels = dataset_to_dicom_json(ds, None)
    assert "7FE00010" not in no_pixels
