"""Archive records: what the ingest path extracts from a header and what it reports back."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Level(enum.StrEnum):
    PATIENT = "Patient"
    STUDY = "Study"
    SERIES = "Series"
    INSTANCE = "Instance"


class StoreOutcome(enum.StrEnum):
    STORED = "stored"  # new instance
    DUPLICATE = "duplicate"  # same SOP Instance UID already stored, kept (policy keep)
    OVERWRITTEN = "overwritten"  # replaced the stored one (policy overwrite)


@dataclass
class IndexRecord:
    """Everything the index needs from one instance header (values as DICOM strings)."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    patient_tags: dict[str, str] = field(default_factory=dict)  # Orthanc MainDicomTags
    study_tags: dict[str, str] = field(default_factory=dict)
    series_tags: dict[str, str] = field(default_factory=dict)
    instance_tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)  # PS3.18 F.2 DICOM JSON, bulk data by reference


@dataclass(frozen=True)
class InstanceRef:
    public_id: str
    sop_instance_uid: str
    series_id: str
    study_id: str
    patient_id: str  # Orthanc id of the patient


@dataclass(frozen=True)
class StoreResult:
    outcome: StoreOutcome
    instance: InstanceRef
    size: int
    warnings: tuple[str, ...] = ()
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
