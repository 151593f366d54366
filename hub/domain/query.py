"""The one query model: C-FIND, QIDO-RS, Orthanc ``/tools/find`` and FHIR search all build a
:class:`Query`, which ``hub.store.query`` compiles to SQL over the indexed columns.

Matching kinds follow PS3.4 C.2.2.2: single value, universal, wildcard, range, list of UIDs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class QueryLevel(enum.IntEnum):
    """Query/Retrieve levels, ordered from the top of the hierarchy (PS3.4 C.3)."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3

    @classmethod
    def parse(cls, text: str) -> QueryLevel:
        return cls[text.strip().upper()]


class Match(enum.StrEnum):
    SINGLE = "single"  # exact value (PS3.4 C.2.2.2.1)
    WILDCARD = "wildcard"  # ``*`` and ``?`` (C.2.2.2.4)
    RANGE = "range"  # ``lo-hi``, ``-hi``, ``lo-`` (C.2.2.2.5)
    LIST = "list"  # backslash-separated UIDs or values (C.2.2.2.2)
    SEQUENCE = "sequence"  # item keys matched inside a sequence (C.2.2.2.6)


@dataclass(frozen=True)
class ItemKey:
    """One key of a sequence-matching item: DICOM JSON tag, VR, and a single or wildcard value."""

    tag: str
    vr: str
    match: Match
    value: str


@dataclass(frozen=True)
class Condition:
    keyword: str
    match: Match
    value: str | tuple[str, ...] | tuple[str | None, str | None] | tuple[ItemKey, ...]
    tag: str = ""  # DICOM JSON tag (GGGGEEEE), for sequence matching
    level: QueryLevel | None = None  # level of a sequence key (MATCHABLE keys know theirs)


@dataclass
class Query:
    level: QueryLevel
    conditions: list[Condition] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    case_insensitive_names: bool = True


# Matchable attributes: keyword -> (level, kind). Kinds: uid, string, name (PN: case-insensitive by
# default), text (descriptions: case-insensitive), date, time, int, code (upper-cased code
# strings), modalities (ModalitiesInStudy, matched against the study's series).
MATCHABLE: dict[str, tuple[QueryLevel, str]] = {
    "PatientID": (QueryLevel.PATIENT, "string"),
    "IssuerOfPatientID": (QueryLevel.PATIENT, "string"),
    "PatientName": (QueryLevel.PATIENT, "name"),
    "PatientBirthDate": (QueryLevel.PATIENT, "date"),
    "PatientSex": (QueryLevel.PATIENT, "string"),
    "StudyInstanceUID": (QueryLevel.STUDY, "uid"),
    "StudyDate": (QueryLevel.STUDY, "date"),
    "StudyTime": (QueryLevel.STUDY, "time"),
    "AccessionNumber": (QueryLevel.STUDY, "string"),
    "StudyID": (QueryLevel.STUDY, "string"),
    "StudyDescription": (QueryLevel.STUDY, "text"),
    "ReferringPhysicianName": (QueryLevel.STUDY, "name"),
    "ModalitiesInStudy": (QueryLevel.STUDY, "modalities"),
    "SeriesInstanceUID": (QueryLevel.SERIES, "uid"),
    "Modality": (QueryLevel.SERIES, "string"),
    "SeriesNumber": (QueryLevel.SERIES, "int"),
    "SeriesDescription": (QueryLevel.SERIES, "text"),
    "BodyPartExamined": (QueryLevel.SERIES, "code"),
    "SeriesDate": (QueryLevel.SERIES, "date"),
    "SOPInstanceUID": (QueryLevel.IMAGE, "uid"),
    "SOPClassUID": (QueryLevel.IMAGE, "uid"),
    "InstanceNumber": (QueryLevel.IMAGE, "int"),
}

# Return keys computed by the archive (PS3.4 C.3.2-C.3.5 "additional" keys).
COMPUTED: dict[str, QueryLevel] = {
    "NumberOfPatientRelatedStudies": QueryLevel.PATIENT,
    "NumberOfPatientRelatedSeries": QueryLevel.PATIENT,
    "NumberOfPatientRelatedInstances": QueryLevel.PATIENT,
    "NumberOfStudyRelatedSeries": QueryLevel.STUDY,
    "NumberOfStudyRelatedInstances": QueryLevel.STUDY,
    "ModalitiesInStudy": QueryLevel.STUDY,
    "SOPClassesInStudy": QueryLevel.STUDY,
    "NumberOfSeriesRelatedInstances": QueryLevel.SERIES,
    "RetrieveAETitle": QueryLevel.PATIENT,
    "InstanceAvailability": QueryLevel.PATIENT,
}

# Level of common return-only keys (PS3.4 C.6.1.1 / C.6.2.1 tables); other keywords are
# instance-level attributes.
RETURN_LEVEL: dict[str, QueryLevel] = {
    **{k: QueryLevel.PATIENT for k in (
        "PatientBirthTime", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "EthnicGroup",
        "PatientComments", "IssuerOfPatientIDQualifiersSequence", "PatientSpeciesDescription",
        "ResponsiblePerson", "PatientBreedDescription",
    )},
    **{k: QueryLevel.STUDY for k in (
        "ProcedureCodeSequence", "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription",
        "PatientAge", "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory",
        "OtherStudyNumbers", "InstitutionName", "RequestedProcedureDescription", "RequestingPhysician",
        "ReferencedStudySequence", "ReferencedPatientSequence", "IssuerOfAccessionNumberSequence",
        "StudyStatusID", "InterpretationAuthor",
    )},
    **{k: QueryLevel.SERIES for k in (
        "SeriesTime", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
        "RequestAttributesSequence", "Manufacturer", "StationName", "ProtocolName", "OperatorsName",
        "PerformedProcedureStepDescription", "ContrastBolusAgent", "Laterality", "FrameOfReferenceUID",
        "InstitutionalDepartmentName", "PerformingPhysicianName", "SeriesType",
    )},
}


def level_of(keyword: str) -> QueryLevel:
    if keyword in MATCHABLE:
        return MATCHABLE[keyword][0]
    if keyword in COMPUTED:
        return COMPUTED[keyword]
    return RETURN_LEVEL.get(keyword, QueryLevel.IMAGE)
