"""C-FIND identifier <-> query model and result records (PS3.4 C.2.2, C.4.1).

``identifier_to_query`` reads the request identifier (values already decoded from its Specific
Character Set by pydicom) into a :class:`Query` plus the list of requested return keys;
``record_to_identifier`` builds one response identifier from a result record.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from hub.domain.query import MATCHABLE, Condition, ItemKey, Match, Query, QueryLevel, level_of
from hub.errors import HubError
from mappings.dicom_to_index import normalize_date, normalize_name, normalize_time

_DATE = re.compile(r"^\d{8}$")
_WILDCARD_KINDS = {"string", "name", "text", "code"}
QRL = "QueryRetrieveLevel"
IGNORED = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"}


def identifier_to_query(
    ds: Dataset, *, root: str = "study", case_insensitive_names: bool = True
) -> tuple[Query, list[str]]:
    """Parse a C-FIND identifier. ``root`` is ``patient`` or ``study`` (the information model).

    Raises ``HubError('invalid_identifier')`` (0xA900) for a missing/wrong level or keys below the
    level, ``HubError('invalid_query_value')`` (0xC000 range) for a malformed value.
    """
    raw_level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not raw_level:
        raise HubError("invalid_identifier", "QueryRetrieveLevel (0008,0052) is missing", attribute=QRL)
    try:
        level = QueryLevel.parse(raw_level)
    except KeyError:
        raise HubError("invalid_identifier", "QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE",
                       attribute=QRL) from None
    if root == "study" and level is QueryLevel.PATIENT:
        raise HubError("invalid_identifier", "the Study Root model has no PATIENT level", attribute=QRL)

    query = Query(level=level, case_insensitive_names=case_insensitive_names)
    requested: list[str] = []
    for elem in ds:
        keyword = elem.keyword or keyword_for_tag(elem.tag) or f"{elem.tag:08X}"
        if keyword in IGNORED or elem.tag.group == 0x0002:
            continue
        key_level = level_of(keyword)
        empty = _is_empty(elem)
        if key_level > level:
            if empty:
                continue  # a return key below the level: nothing to return, tolerated
            raise HubError("invalid_identifier", f"{keyword} is below the {level.name} level", attribute=keyword)
        requested.append(keyword)
        if elem.VR == "SQ" and not empty:
            query.conditions.append(sequence_condition(keyword, elem, key_level))
            continue
        if empty or elem.VR == "SQ" or keyword not in MATCHABLE:
            continue  # universal matching, a return key, or an optional key we do not match on
        condition = value_to_condition(keyword, _text(elem))
        if condition is not None:
            query.conditions.append(condition)
    return query, requested


def sequence_condition(keyword: str, elem: DataElement, level: QueryLevel) -> Condition:
    """Sequence matching (PS3.4 C.2.2.2.6): an instance matches when one item of its sequence
    matches every non-empty key of the query's item (single value or wildcard)."""
    if len(elem.value) != 1:
        raise HubError("invalid_identifier", f"{keyword}: sequence matching takes exactly one item", attribute=keyword)
    keys: list[ItemKey] = []
    for sub in elem.value[0]:
        if _is_empty(sub):
            continue
        if sub.VR == "SQ":
            raise HubError("invalid_query_value", f"{keyword}: nested sequence matching is not supported",
                           attribute=keyword)
        text = _text(sub)
        if sub.VR == "PN":
            text = str(sub.value)
        match = Match.WILDCARD if ("*" in text or "?" in text) and sub.VR not in ("UI",) else Match.SINGLE
        keys.append(ItemKey(f"{sub.tag:08X}", sub.VR, match, text))
    return Condition(keyword, Match.SEQUENCE, tuple(keys), tag=f"{elem.tag:08X}", level=level)


def _is_empty(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return not any(len(item) and any(not _is_empty(e) for e in item) for item in elem.value or [])
    value = elem.value
    return value is None or value == "" or value == b"" or (isinstance(value, (list, MultiValue)) and not value)


def _text(elem: DataElement) -> str:
    value = elem.value
    if isinstance(value, (list, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def value_to_condition(keyword: str, text: str) -> Condition | None:
    """One matching condition for a matchable key, or ``None`` for universal matching."""
    kind = MATCHABLE[keyword][1]
    text = text.strip()
    if text in ("", "*"):
        return None
    if kind == "uid":
        uids = tuple(u.strip() for u in text.split("\\") if u.strip())
        if any(not re.fullmatch(r"[0-9.]{1,64}", u) for u in uids):
            raise HubError("invalid_query_value", f"{keyword} must be UIDs separated by backslashes", attribute=keyword)
        return Condition(keyword, Match.LIST, uids) if len(uids) > 1 else Condition(keyword, Match.SINGLE, uids[0])
    if kind in ("date", "time"):
        return _range_condition(keyword, kind, text)
    if kind == "int":
        values = text.split("\\")
        if not all(re.fullmatch(r"[+-]?\d+", v.strip()) for v in values):
            raise HubError("invalid_query_value", f"{keyword} must be an integer", attribute=keyword)
        ints = tuple(str(int(v)) for v in values)
        return Condition(keyword, Match.LIST, ints) if len(ints) > 1 else Condition(keyword, Match.SINGLE, ints[0])
    if kind == "modalities":
        mods = tuple(m.strip() for m in text.split("\\") if m.strip())
        return Condition(keyword, Match.LIST, mods)
    if kind in ("name", "text", "code"):
        text = normalize_name(text) or ""
    if kind in _WILDCARD_KINDS and ("*" in text or "?" in text):
        return Condition(keyword, Match.WILDCARD, text)
    if "\\" in text:
        return Condition(keyword, Match.LIST, tuple(v for v in text.split("\\") if v))
    return Condition(keyword, Match.SINGLE, text)


def _range_condition(keyword: str, kind: str, text: str) -> Condition:
    norm = normalize_date if kind == "date" else normalize_time

    def one(part: str) -> str:
        value = norm(part.strip())
        if value is None:
            what = "YYYYMMDD" if kind == "date" else "HHMMSS[.ffffff]"
            raise HubError("invalid_query_value", f"{keyword}: '{part}' is not {what}", attribute=keyword)
        return value

    if "-" in text and not (kind == "date" and text.count("-") == 2 and len(text) == 10):
        lo, _, hi = text.partition("-")
        if not lo.strip() and not hi.strip():
            raise HubError("invalid_query_value", f"{keyword}: a range needs a start or an end", attribute=keyword)
        low = one(lo) if lo.strip() else None
        high = one(hi) if hi.strip() else None
        if kind == "time" and high is not None:
            high = _time_upper(hi.strip())
        if low and high and low > high:
            raise HubError("invalid_query_value", f"{keyword}: the range ends before it starts", attribute=keyword)
        return Condition(keyword, Match.RANGE, (low, high))
    if kind == "time":
        return Condition(keyword, Match.RANGE, (one(text), _time_upper(text)))
    return Condition(keyword, Match.SINGLE, one(text))


def _time_upper(text: str) -> str:
    """Upper bound of a partial time: ``10`` covers 10:00:00 to 10:59:59.999999 (PS3.4 C.2.2.2.5)."""
    main, _, frac = text.replace(":", "").partition(".")
    padded = main + "995959"[len(main) :] if len(main) < 6 else main
    return f"{padded}.{frac[:6].ljust(6, '9')}"


# --------------------------------------------------------------------------- responses


def record_to_identifier(record: dict[str, Any], requested: list[str], level: QueryLevel) -> Dataset:
    """One C-FIND response identifier with exactly the requested keys (PS3.4 C.4.1.1.3.2).

    ``record`` holds ``tags`` (keyword -> Orthanc-style string, all levels merged), ``computed``
    (keyword -> value) and, at IMAGE level, ``metadata`` (DICOM JSON of the instance).
    """
    out = Dataset()
    out.QueryRetrieveLevel = level.name
    tags: dict[str, str] = record.get("tags", {})
    computed: dict[str, Any] = record.get("computed", {})
    metadata: dict[str, Any] | None = record.get("metadata")
    for keyword in requested:
        if keyword in computed:
            _set(out, keyword, computed[keyword])
        elif metadata is not None and (elem_json := metadata.get(_json_tag(keyword))) is not None:
            if "BulkDataURI" in elem_json or "InlineBinary" in elem_json:
                _set(out, keyword, None)
            else:
                if elem_json.get("vr") in ("DS", "IS") and elem_json.get("Value"):
                    # as strings, so 120 stays "120" (pydicom's from_json would make it "120.0")
                    _set(out, keyword, [str(v) for v in elem_json["Value"]])
                else:
                    out.update(Dataset.from_json({_json_tag(keyword): elem_json}))
        elif keyword in tags:
            _set(out, keyword, tags[keyword])
        else:
            _set(out, keyword, None)
    return out


def _json_tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return f"{tag:08X}" if tag is not None else keyword


def _set(ds: Dataset, keyword: str, value: Any) -> None:
    try:
        vr = dictionary_VR(keyword)
    except KeyError:
        return  # a private or unknown tag we cannot type: not returned
    if vr == "SQ":
        setattr(ds, keyword, [])
        return
    if value is None or value == "":
        setattr(ds, keyword, None)
        return
    if isinstance(value, str) and "\\" in value:
        value = value.split("\\")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, (list, tuple)) and vr in ("IS", "DS", "US", "UL", "SS", "SL", "FL", "FD"):
        value = [v for v in value if v != ""]
    setattr(ds, keyword, value)


# --------------------------------------------------------------------------- character sets


def response_charset(requested: str | list[str] | None, values: list[str]) -> str | None:
    """Specific Character Set of a response (PS3.5 6.1): the requester's when every value fits in
    it, else UTF-8 (``ISO_IR 192``); ``None`` (default repertoire) for plain ASCII answers."""
    from pydicom.charset import convert_encodings

    texts = [v for v in values if v]
    if all(t.isascii() for t in texts):
        return None
    terms = [requested] if isinstance(requested, str) else list(requested or [])
    terms = [t.strip() for t in terms if t and t.strip()]
    if terms and len(terms) == 1 and terms[0] not in ("ISO_IR 6", ""):
        try:
            codec = convert_encodings(terms)[0]
            for t in texts:
                t.encode(codec)
            return terms[0]
        except (LookupError, UnicodeEncodeError, ValueError):
            pass
    return "ISO_IR 192"


def text_values(ds: Dataset) -> list[str]:
    """The string values of a (flat) response identifier, for :func:`response_charset`."""
    out: list[str] = []
    for elem in ds:
        if elem.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC"):
            value = elem.value
            if isinstance(value, (list, MultiValue)):
                out.extend(str(v) for v in value)
            elif value is not None:
                out.append(str(value))
    return out
