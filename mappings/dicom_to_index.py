"""DICOM header -> index record: match columns (normalized) and Orthanc MainDicomTags.

Match columns follow the PS3.4 C.2.2.2 matching needs of C-FIND/QIDO-RS/FHIR search: dates as
``YYYYMMDD``, times as ``HHMMSS.ffffff``, person names upper-cased for case-insensitive matching.
Return values are never read from these columns: they come from the stored tags/JSON.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hub.domain.archive import IndexRecord
from mappings.ascii import is_digits
from mappings.dicom_to_fhir_values import dicom_utc

# Orthanc 1.10 default MainDicomTags per level (OrthancFramework DicomMap.cpp).
PATIENT_MAIN_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
STUDY_MAIN_TAGS = (
    "StudyDate", "StudyTime", "StudyID", "StudyDescription", "AccessionNumber", "StudyInstanceUID",
    "RequestedProcedureDescription", "InstitutionName", "RequestingPhysician", "ReferringPhysicianName",
)
SERIES_MAIN_TAGS = (
    "SeriesDate", "SeriesTime", "Modality", "Manufacturer", "StationName", "SeriesDescription",
    "BodyPartExamined", "SequenceName", "ProtocolName", "SeriesNumber", "CardiacNumberOfImages",
    "ImagesInAcquisition", "NumberOfTemporalPositions", "NumberOfSlices", "NumberOfTimeSlices",
    "SeriesInstanceUID", "ImageOrientationPatient", "SeriesType", "OperatorsName",
    "PerformedProcedureStepDescription", "AcquisitionDeviceProcessingDescription", "ContrastBolusAgent",
)
INSTANCE_MAIN_TAGS = (
    "InstanceCreationDate", "InstanceCreationTime", "AcquisitionNumber", "ImageIndex", "InstanceNumber",
    "NumberOfFrames", "TemporalPositionIdentifier", "SOPInstanceUID", "ImagePositionPatient",
    "ImageComments", "ImageOrientationPatient",
)

REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


def tag_string(ds: Dataset, keyword: str) -> str | None:
    """Orthanc-style string value of a top-level element: multi-values joined by ``\\``."""
    if keyword not in ds:
        return None
    elem = ds.data_element(keyword)
    if elem is None:
        return None
    value = elem.value
    if value is None:
        return ""
    if elem.VR == "SQ":
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(_one(v) for v in value)
    return _one(value)


def _one(value: Any) -> str:
    original = getattr(value, "original_string", None)
    text = original if isinstance(original, str) else str(value)
    return text.strip(" \x00")


def normalize_name(value: str | None) -> str | None:
    """Person name / description key for case- and accent-insensitive matching."""
    if value is None:
        return None
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.upper().strip()


def normalize_date(value: str | None) -> str | None:
    """DA -> ``YYYYMMDD`` (accepts the ACR-NEMA ``YYYY.MM.DD`` form); ``None`` if not a date."""
    if not value:
        return None
    digits = value.replace(".", "").replace("-", "").strip()
    if len(digits) == 8 and is_digits(digits):
        return digits
    return None


def normalize_time(value: str | None) -> str | None:
    """TM -> ``HHMMSS.ffffff`` with absent components as zero; ``None`` if not a time."""
    if not value:
        return None
    text = value.replace(":", "").strip()
    main, _, frac = text.partition(".")
    if not is_digits(main) or len(main) not in (2, 4, 6) or (frac and not is_digits(frac)):
        return None
    return f"{main.ljust(6, '0')}.{frac[:6].ljust(6, '0')}"


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value.split("\\")[0]))
    except ValueError:
        return None


def _tags(ds: Dataset, keywords: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kw in keywords:
        v = tag_string(ds, kw)
        if v is not None:
            out[kw] = v
    return out


def missing_uids(ds: Dataset) -> list[str]:
    """Keywords of the identifying UIDs that are absent or empty."""
    return [kw for kw in REQUIRED_UIDS if not tag_string(ds, kw)]


def dataset_to_index(ds: Dataset, transfer_syntax_uid: str) -> IndexRecord:
    """Extract the index record of one instance. The caller has checked :func:`missing_uids`."""
    s = lambda kw: tag_string(ds, kw)  # noqa: E731
    patient_name = s("PatientName") or ""
    study_desc = s("StudyDescription")
    series_desc = s("SeriesDescription")
    referring = s("ReferringPhysicianName")
    patient = {
        "patient_id": s("PatientID") or "",
        "issuer_of_patient_id": s("IssuerOfPatientID"),
        "patient_name": patient_name,
        "patient_name_norm": normalize_name(patient_name),
        "birth_date": normalize_date(s("PatientBirthDate")),
        "sex": (s("PatientSex") or None),
    }
    study = {
        "study_uid": s("StudyInstanceUID"),
        "study_date": normalize_date(s("StudyDate")),
        "study_time": normalize_time(s("StudyTime")),
        # the moment, with Timezone Offset From UTC (0008,0201) else the hub's zone (PS3.3 C.12.1.1.8)
        "started_at": dicom_utc(normalize_date(s("StudyDate")), normalize_time(s("StudyTime")),
                                s("TimezoneOffsetFromUTC")),
        "accession_number": s("AccessionNumber") or None,
        "study_id": s("StudyID") or None,
        "study_description": study_desc or None,
        "study_description_norm": normalize_name(study_desc) or None,
        "referring_physician_name": referring or None,
        "referring_physician_norm": normalize_name(referring) or None,
        "institution_name": s("InstitutionName") or None,
    }
    series = {
        "series_uid": s("SeriesInstanceUID"),
        "modality": s("Modality") or None,
        "series_number": _int(s("SeriesNumber")),
        "series_description": series_desc or None,
        "series_description_norm": normalize_name(series_desc) or None,
        "body_part_examined": (s("BodyPartExamined") or "").upper() or None,
        "series_date": normalize_date(s("SeriesDate")),
        "series_time": normalize_time(s("SeriesTime")),
        "station_name": s("StationName") or None,
        "manufacturer": s("Manufacturer") or None,
    }
    instance = {
        "sop_instance_uid": s("SOPInstanceUID"),
        "sop_class_uid": s("SOPClassUID"),
        "instance_number": _int(s("InstanceNumber")),
        "number_of_frames": _int(s("NumberOfFrames")) or 1,
        "transfer_syntax_uid": transfer_syntax_uid,
    }
    return IndexRecord(
        patient=patient,
        study=study,
        series=series,
        instance=instance,
        patient_tags=_tags(ds, PATIENT_MAIN_TAGS),
        study_tags=_tags(ds, STUDY_MAIN_TAGS),
        series_tags=_tags(ds, SERIES_MAIN_TAGS),
        instance_tags=_tags(ds, INSTANCE_MAIN_TAGS),
    )
