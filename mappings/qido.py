"""QIDO-RS query parameters -> the hub's query model (PS3.18 8.3.4 and 10.6).

Matching keys are keywords or 8-hex tags (``PatientName=SMI*``, ``00100010=SMI*``), one level of
sequence matching as ``SequenceKeyword.ItemKeyword=value``; values use the C-FIND rules (PS3.4
C.2.2.2: wildcards, ranges, UID lists, here comma- or backslash-separated). ``includefield`` adds
return attributes (``all`` for every one the archive holds), ``fuzzymatching=true`` makes person
names match as case-insensitive prefixes, ``limit``/``offset`` page the results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from hub.domain.query import COMPUTED, MATCHABLE, Condition, ItemKey, Match, Query, QueryLevel, level_of
from hub.errors import HubError
from mappings.dicom_query import value_to_condition
from mappings.dicom_to_index import normalize_name

# Result attributes per level (PS3.18 Tables 10.6.3-3, -4, -5), plus the description attributes viewers show.
STUDY_ATTRS = ["SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
               "ModalitiesInStudy", "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
               "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances"]
SERIES_ATTRS = ["SpecificCharacterSet", "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
                "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
                "PerformedProcedureStepStartTime", "RequestAttributesSequence", "SeriesDate", "SeriesTime",
                "BodyPartExamined", "StudyInstanceUID"]
INSTANCE_ATTRS = ["SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber",
                  "Rows", "Columns", "BitsAllocated", "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID"]
DEFAULT_ATTRS = {QueryLevel.STUDY: STUDY_ATTRS, QueryLevel.SERIES: SERIES_ATTRS, QueryLevel.IMAGE: INSTANCE_ATTRS}
# `includefield=all` at the study and series levels: everything the index keeps for them.
ALL_EXTRA = {
    QueryLevel.STUDY: ["InstitutionName", "IssuerOfPatientID", "NumberOfPatientRelatedStudies", "RetrieveAETitle",
                       "SOPClassesInStudy"],
    QueryLevel.SERIES: ["StationName", "Manufacturer", "ProtocolName", "OperatorsName", "RetrieveAETitle"],
}
CONTROL = {"limit", "offset", "fuzzymatching", "includefield"}
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
MAX_LIMIT = 10_000


@dataclass
class QidoRequest:
    query: Query
    keywords: list[str]
    include_all: bool = False
    unsupported: list[str] = field(default_factory=list)  # keys given that the archive does not match on


def _keyword(key: str) -> str:
    """A keyword from a keyword or an 8-hex tag; 400 when it names no attribute."""
    key = key.strip()
    if _TAG.match(key):
        kw = keyword_for_tag(int(key, 16))
        if kw:
            return kw
    elif tag_for_keyword(key) is not None:
        return key
    raise HubError("bad_request", f"unknown attribute '{key}' in the query", attribute=key)


def _int(name: str, raw: str, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise HubError("bad_request", f"'{name}' must be a non-negative integer") from None
    if value < 0:
        raise HubError("bad_request", f"'{name}' must be a non-negative integer")
    return min(value, maximum) if maximum else value


def qido_to_query(level: QueryLevel, params: Iterable[tuple[str, str]], scope: dict[str, str] | None = None,
                  *, case_insensitive_names: bool = True) -> QidoRequest:
    """Read QIDO-RS query parameters (``(name, value)`` pairs, repeats allowed) for a search at ``level``
    within ``scope`` (the Study/Series Instance UIDs of the URL)."""
    query = Query(level=level, case_insensitive_names=case_insensitive_names)
    keywords = list(DEFAULT_ATTRS[level])
    if level >= QueryLevel.SERIES and not (scope or {}).get("StudyInstanceUID"):
        keywords += [k for k in STUDY_ATTRS if k not in keywords]
    if level is QueryLevel.IMAGE and not (scope or {}).get("SeriesInstanceUID"):
        keywords += [k for k in SERIES_ATTRS if k not in keywords]
    req = QidoRequest(query, keywords)
    fuzzy = False
    matches: list[tuple[str, str]] = []
    for name, value in params:
        lname = name.strip().lower()
        if lname == "limit":
            query.limit = _int("limit", value, MAX_LIMIT)
        elif lname == "offset":
            query.offset = _int("offset", value)
        elif lname == "fuzzymatching":
            if value.strip().lower() not in ("true", "false"):
                raise HubError("bad_request", "'fuzzymatching' must be true or false")
            fuzzy = value.strip().lower() == "true"
        elif lname == "includefield":
            for item in value.split(","):
                item = item.strip()
                if not item:
                    continue
                if item.lower() == "all":
                    req.include_all = True
                    keywords += [k for k in ALL_EXTRA.get(level, []) if k not in keywords]
                else:
                    kw = _keyword(item.split(".")[0])
                    if kw not in keywords:
                        keywords.append(kw)
        else:
            matches.append((name, value))
    for uid_key, uid in (scope or {}).items():
        query.conditions.append(Condition(uid_key, Match.SINGLE, uid))
    for name, value in matches:
        _add_match(req, level, name, value, fuzzy)
    return req


def _add_match(req: QidoRequest, level: QueryLevel, name: str, value: str, fuzzy: bool) -> None:
    head, _, item = name.strip().partition(".")
    keyword = _keyword(head)
    key_level = level_of(keyword)
    if key_level > level:
        raise HubError("bad_request", f"{keyword} cannot be matched at the {level.name.lower()} level",
                       attribute=keyword)
    if keyword not in req.keywords:
        req.keywords.append(keyword)
    if item:
        req.query.conditions.append(_sequence(keyword, item, value, key_level))
        return
    if keyword in COMPUTED and keyword not in MATCHABLE:
        req.unsupported.append(keyword)
        return
    if keyword not in MATCHABLE:
        req.unsupported.append(keyword)
        return
    kind = MATCHABLE[keyword][1]
    text = value.strip()
    if kind in ("uid", "modalities"):
        text = text.replace(",", "\\")
    if fuzzy and kind == "name" and text and "*" not in text and "?" not in text:
        text = (normalize_name(text) or text) + "*"
    condition = value_to_condition(keyword, text)
    if condition is not None:
        req.query.conditions.append(condition)


def _sequence(keyword: str, item_key: str, value: str, level: QueryLevel) -> Condition:
    try:
        if dictionary_VR(keyword) != "SQ":
            raise HubError("bad_request", f"{keyword} is not a sequence", attribute=keyword)
    except KeyError:
        raise HubError("bad_request", f"unknown attribute '{keyword}'", attribute=keyword) from None
    sub = _keyword(item_key)
    if "." in item_key:
        raise HubError("bad_request", "only one level of sequence matching is supported", attribute=keyword)
    tag = tag_for_keyword(sub)
    vr = dictionary_VR(sub)
    text = value.strip()
    match = Match.WILDCARD if ("*" in text or "?" in text) and vr != "UI" else Match.SINGLE
    seq_tag = tag_for_keyword(keyword)
    return Condition(keyword, Match.SEQUENCE, (ItemKey(f"{tag:08X}", vr, match, text),), tag=f"{seq_tag:08X}",
                     level=level)
