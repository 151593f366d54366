"""Orthanc ``POST /tools/find`` body -> the one query model (:class:`hub.domain.query.Query`).

Matching follows Orthanc 1.10 (``DatabaseLookup::AddDicomConstraintInternal``): a ``-`` in a DA,
DT or TM value is a range, a ``\\`` a list, ``*``/``?`` a wildcard (only for the AE, CS, LO, LT,
PN, SH, ST, UC, UR and UT VRs; elsewhere a 400), anything else a single value; an empty value is
universal matching. Strings match case-insensitively unless ``CaseSensitive`` is true. Keys of
Orthanc's MainDicomTags match the index; a main tag of a level *below* the query level matches
nothing (as in Orthanc 1.10, which checks the constraints on the main tags of the query level and
above), and so does ``ModalitiesInStudy`` anywhere but at the study level; other tags are matched,
like Orthanc does from the files, on the stored DICOM JSON of an instance (:class:`TagFilter`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from hub.domain.query import MATCHABLE, Condition, Match, Query, QueryLevel
from hub.errors import HubError
from mappings.dicom_to_index import (
    INSTANCE_MAIN_TAGS,
    PATIENT_MAIN_TAGS,
    SERIES_MAIN_TAGS,
    STUDY_MAIN_TAGS,
    normalize_date,
    normalize_name,
    normalize_time,
)
from mappings.index_to_orthanc import element_string

WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "DT", "TM"})
NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})
MAIN_TAGS: dict[QueryLevel, frozenset[str]] = {
    QueryLevel.PATIENT: frozenset(PATIENT_MAIN_TAGS),
    QueryLevel.STUDY: frozenset(STUDY_MAIN_TAGS),
    QueryLevel.SERIES: frozenset(SERIES_MAIN_TAGS),
    QueryLevel.IMAGE: frozenset(INSTANCE_MAIN_TAGS),
}
LEVELS = {
    "PATIENT": QueryLevel.PATIENT, "PATIENTS": QueryLevel.PATIENT,
    "STUDY": QueryLevel.STUDY, "STUDIES": QueryLevel.STUDY,
    "SERIES": QueryLevel.SERIES,
    "INSTANCE": QueryLevel.IMAGE, "INSTANCES": QueryLevel.IMAGE, "IMAGE": QueryLevel.IMAGE, "IMAGES": QueryLevel.IMAGE,
}
_HEX_TAG = re.compile(r"^([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})$")
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


@dataclass(frozen=True)
class TagFilter:
    """A constraint on a tag the index does not hold, matched on an instance's DICOM JSON."""

    tag: str  # GGGGEEEE
    vr: str
    match: Match
    value: str | tuple[str, ...] | tuple[str | None, str | None]
    case_sensitive: bool = False


@dataclass
class FindRequest:
    query: Query
    expand: bool = False
    limit: int = 0  # 0: no limit (Orthanc)
    since: int = 0
    requested_tags: list[str] = field(default_factory=list)
    filters: list[TagFilter] = field(default_factory=list)
    matches_nothing: bool = False  # a constraint that can never match (Orthanc answers [])


def parse_level(text: Any) -> QueryLevel:
    """Orthanc ``StringToResourceType``: Patient(s), Study/Studies, Series, Instance(s), Image(s)."""
    if not isinstance(text, str):
        raise HubError("bad_request", 'Field "Level" is missing, or should be a string')
    try:
        return LEVELS[text.strip().upper()]
    except KeyError:
        raise HubError("bad_request", f"Invalid resource type: {text}") from None


def parse_tag(text: str) -> tuple[int, str]:
    """``PatientName``, ``0010,0010`` or ``00100010`` -> (tag, keyword; the hex form for private tags)."""
    m = _HEX_TAG.match(text.strip())
    if m:
        tag = int(m.group(1) + m.group(2), 16)
        return tag, keyword_for_tag(tag) or f"{tag:08X}"
    tag = tag_for_keyword(text.strip())
    if tag is None:
        raise HubError("bad_request", f"Unknown DICOM tag: {text}")
    return tag, text.strip()


def _vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def _int_field(body: dict[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value >= 2**31:  # Orthanc: a JSON int
        raise HubError("bad_request", f'Field "{key}" should be an integer')
    if value < 0:
        raise HubError("bad_request", f'Field "{key}" should be a positive integer')
    return value


def _bool_field(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise HubError("bad_request", f'Field "{key}" should be a Boolean')
    return value


def orthanc_find_to_query(body: Any) -> FindRequest:
    """Parse an Orthanc ``/tools/find`` request; raises ``HubError('bad_request')`` (400)."""
    if not isinstance(body, dict):
        raise HubError("bad_request", "The body must contain a JSON object")
    level = parse_level(body.get("Level"))
    query_json = body.get("Query")
    if not isinstance(query_json, dict):
        raise HubError("bad_request", 'Field "Query" is missing, or should be a JSON object')
    case_sensitive = _bool_field(body, "CaseSensitive")
    requested = body.get("RequestedTags", [])
    if not isinstance(requested, list) or not all(isinstance(t, str) for t in requested):
        raise HubError("bad_request", 'Field "RequestedTags" should be a list of strings')
    request = FindRequest(
        query=Query(level=level, case_insensitive_names=not case_sensitive),
        expand=_bool_field(body, "Expand"),
        limit=_int_field(body, "Limit"),
        since=_int_field(body, "Since"),
        requested_tags=[parse_tag(t)[1] for t in requested],
    )
    for key, value in query_json.items():
        if not isinstance(value, str):
            raise HubError("bad_request", f'Tag "{key}" should be associated with a string')
        tag, keyword = parse_tag(key)
        if value:
            _add_constraint(request, tag, keyword, value, case_sensitive)
    return request


def _split(tag: int, vr: str, value: str) -> tuple[Match, Any] | None:
    """Orthanc's constraint kind for one value; ``None`` for universal matching."""
    if vr in RANGE_VRS and "-" in value:
        lo, _, hi = value.partition("-")
        if not lo and not hi:
            return None
        return Match.RANGE, (lo or None, hi or None)
    if tag == 0x00080061 or "\\" in value:
        return Match.LIST, tuple(value.split("\\"))
    if "*" in value or "?" in value:
        if vr not in WILDCARD_VRS:
            raise HubError("bad_request", f"Wildcards are not allowed on tag {tag >> 16:04x},{tag & 0xFFFF:04x}")
        if value.strip("*") == "":
            return None
        return Match.WILDCARD, value
    return Match.SINGLE, value


def _main_level(keyword: str, level: QueryLevel) -> tuple[QueryLevel | None, bool]:
    """(level whose index holds ``keyword`` for a query at ``level``, whether it is below it)."""
    levels = [lvl for lvl, tags in MAIN_TAGS.items() if keyword in tags]
    if keyword in MATCHABLE and MATCHABLE[keyword][0] not in levels and MATCHABLE[keyword][0] <= level:
        levels.append(MATCHABLE[keyword][0])
    usable = [lvl for lvl in levels if lvl <= level]
    if usable:
        return max(usable), False
    return None, bool(levels)


def _add_constraint(request: FindRequest, tag: int, keyword: str, value: str, case_sensitive: bool) -> None:
    query = request.query
    vr = _vr(tag)
    split = _split(tag, vr, value)
    if keyword == "ModalitiesInStudy":
        if query.level is not QueryLevel.STUDY:
            request.matches_nothing = True  # Orthanc 1.10 finds nothing
        elif split is not None:
            mods = tuple(v if case_sensitive else v.upper() for v in split[1])
            query.conditions.append(Condition(keyword, Match.LIST, mods, level=QueryLevel.STUDY))
        return
    main_level, below = _main_level(keyword, query.level)
    if below:
        request.matches_nothing = True  # Orthanc 1.10: a lower level's main tag finds nothing
        return
    if split is None:
        return
    match, parsed = split
    if main_level is None:
        request.filters.append(TagFilter(f"{tag:08X}", vr, match, parsed, case_sensitive))
        return
    cond = _indexed_condition(keyword, match, parsed, main_level, case_sensitive)
    if cond is None:
        request.matches_nothing = True
    else:
        query.conditions.append(cond)


def _indexed_condition(
    keyword: str, match: Match, value: Any, level: QueryLevel, case_sensitive: bool
) -> Condition | None:
    """A condition on the index, its values prepared for the column the store compares them with
    (upper-cased or name-normalized when case-insensitive); ``None`` when nothing can match."""
    kind = MATCHABLE[keyword][1] if keyword in MATCHABLE else "json"
    insensitive = not case_sensitive

    def prep(v: str) -> str:
        if kind == "date":
            return normalize_date(v) or v
        if kind == "time":
            return v if match is Match.RANGE else (normalize_time(v) or v)
        if kind == "uid":
            return v.strip()
        if kind in ("name", "text"):
            return (normalize_name(v) or "") if insensitive else v
        return v.upper() if insensitive else v

    if kind == "int":
        values = value if isinstance(value, tuple) else (value,)
        if match is Match.RANGE or match is Match.WILDCARD or not all(_INT.match(v or "") for v in values):
            return None  # IS values compared as numbers; anything else cannot be equal
        value = tuple(str(int(v)) for v in values) if match is Match.LIST else str(int(value))
    elif match is Match.RANGE:
        value = tuple(prep(v) if v is not None else None for v in value)
    elif match is Match.LIST:
        value = tuple(prep(v) for v in value)
    else:
        value = prep(value)
    return Condition(keyword, match, value, level=level)


# --------------------------------------------------------------------------- DICOM JSON filters


def _wildcard_regex(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def _equal(vr: str, actual: str, wanted: str, case_sensitive: bool) -> bool:
    if vr in NUMERIC_VRS:
        try:
            return float(actual) == float(wanted)
        except ValueError:
            pass
    return actual == wanted if case_sensitive else actual.upper() == wanted.upper()


def filter_matches(f: TagFilter, dataset: dict[str, Any]) -> bool:
    """Whether the DICOM JSON ``dataset`` of an instance satisfies ``f`` (Orthanc
    ``DicomTagConstraint::IsMatch`` on the tag's string value; an absent tag never matches)."""
    element = dataset.get(f.tag)
    if element is None:
        return False
    actual = element_string(element)
    if actual is None:
        return False
    if f.match is Match.RANGE:
        lo, hi = f.value  # type: ignore[misc]
        return (lo is None or actual >= lo) and (hi is None or actual <= hi)
    if f.match is Match.LIST:
        return any(_equal(f.vr, actual, v, f.case_sensitive) for v in f.value)  # type: ignore[union-attr]
    if f.match is Match.WILDCARD:
        return bool(_wildcard_regex(str(f.value), f.case_sensitive).match(actual))
    return _equal(f.vr, actual, str(f.value), f.case_sensitive)
