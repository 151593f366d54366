"""C-MOVE / C-GET identifier -> :class:`RetrieveKeys` (PS3.4 C.4.2.2.1, C.4.3.2.1, C.6).

A retrieve identifier holds the Query/Retrieve Level and unique keys: the key of the level
(PATIENT: PatientID, STUDY: StudyInstanceUID, SERIES: SeriesInstanceUID, IMAGE: SOPInstanceUID),
a single value or, for UIDs, a list (C.2.2.2.2), and in hierarchical retrieval the unique keys of
the levels above. Those are optional here (as in Orthanc and DCMTK) and narrow the match when
given. Other attributes are ignored. Universal or wildcard values cannot name instances.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hub.domain.query import QueryLevel
from hub.domain.retrieve import RetrieveKeys
from hub.errors import HubError

QRL = "QueryRetrieveLevel"
UNIQUE_KEYS = {
    QueryLevel.PATIENT: "PatientID",
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}


def identifier_to_retrieve_keys(ds: Dataset, *, root: str = "study") -> RetrieveKeys:
    """Parse a C-MOVE/C-GET identifier; ``root`` is ``patient`` or ``study`` (the information model).

    Raises ``HubError('invalid_identifier')`` (0xA900) for a missing or wrong level, a level the
    model does not have, a missing unique key of the level, or a wildcard in a unique key.
    """
    raw_level = str(ds.get(QRL, "") or "").strip().upper()
    if not raw_level:
        raise HubError("invalid_identifier", "QueryRetrieveLevel (0008,0052) is missing", attribute=QRL)
    try:
        level = QueryLevel.parse(raw_level)
    except KeyError:
        raise HubError(
            "invalid_identifier", "QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE", attribute=QRL
        ) from None
    if root == "study" and level is QueryLevel.PATIENT:
        raise HubError("invalid_identifier", "the Study Root model has no PATIENT level", attribute=QRL)

    values: dict[QueryLevel, tuple[str, ...]] = {}
    for key_level, keyword in UNIQUE_KEYS.items():
        if key_level > level or (key_level is QueryLevel.PATIENT and root == "study"):
            continue  # below the level, or not a unique key of the Study Root model: ignored
        values[key_level] = _key_values(ds, keyword)
    if not values[level]:
        keyword = UNIQUE_KEYS[level]
        raise HubError("invalid_identifier", f"a {level.name} level retrieve needs {keyword}", attribute=keyword)
    return RetrieveKeys(
        level=level,
        patient_ids=values.get(QueryLevel.PATIENT, ()),
        study_uids=values.get(QueryLevel.STUDY, ()),
        series_uids=values.get(QueryLevel.SERIES, ()),
        sop_instance_uids=values.get(QueryLevel.IMAGE, ()),
    )


def _key_values(ds: Dataset, keyword: str) -> tuple[str, ...]:
    """The non-empty values of a unique key, in order, without duplicates."""
    value = ds.get(keyword)
    if value is None:
        return ()
    items = value if isinstance(value, (MultiValue, list, tuple)) else str(value).split("\\")
    out = dict.fromkeys(v for v in (str(x).strip(" \x00") for x in items) if v)
    for v in out:
        if "*" in v or "?" in v:
            raise HubError(
                "invalid_identifier", f"{keyword} must name instances, not match them by wildcard", attribute=keyword
            )
    return tuple(out)
