"""Orthanc-compatible public identifiers.

Orthanc hashes ``PatientID``, ``PatientID|StudyInstanceUID``, ``...|SeriesInstanceUID`` and
``...|SOPInstanceUID`` with SHA-1 and writes the 40 hex digits as five dash-separated groups of
eight (Orthanc ``DicomInstanceHasher``). The same inputs give the same ids as Orthanc.
"""

from __future__ import annotations

import hashlib


def _format(digest: str) -> str:
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def orthanc_id(*parts: str) -> str:
    """Public id for the resource identified by ``parts`` (patient id first, then UIDs)."""
    return _format(hashlib.sha1("|".join(parts).encode("utf-8")).hexdigest())


def hierarchy_ids(patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> tuple[str, str, str, str]:
    """Public ids of patient, study, series and instance."""
    return (
        orthanc_id(patient_id),
        orthanc_id(patient_id, study_uid),
        orthanc_id(patient_id, study_uid, series_uid),
        orthanc_id(patient_id, study_uid, series_uid, sop_uid),
    )
