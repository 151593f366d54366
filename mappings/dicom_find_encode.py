"""C-FIND response identifiers written straight to bytes (PS3.5 7.1, PS3.4 C.4.1.1.3.2).

:func:`record_to_identifier` in :mod:`mappings.dicom_query` builds a pydicom ``Dataset`` per match,
which pynetdicom then encodes: about 0.4 ms of Python per answer, the bulk of a C-FIND with many
matches. :func:`record_to_identifier_bytes` writes the same flat identifier directly in Little
Endian (Explicit or Implicit VR): the requested keys in tag order, string values padded to even
length (UI with NUL, others with a space), requested sequences empty. It answers ``None`` where the
Dataset path is needed (a non-ASCII value, so a Specific Character Set must be chosen; a binary VR;
a value in the instance metadata that is not a plain string list, or a sequence with items), and the
caller falls back; both paths give the same elements.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.datadict import dictionary_VR

from hub.domain.query import QueryLevel
from mappings.record_to_dicom_json import keyword_tag_vr

# VRs whose value is text in the default repertoire or a number written as text (PS3.5 6.2).
TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                      "UR", "UT"})
NUMBER_TEXT = frozenset({"IS", "DS"})
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})  # PS3.5 7.1.2
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_EXPLICIT_LONG = struct.Struct("<HH2s2xL")
_IMPLICIT = struct.Struct("<HHL")
_QRL_TAG = 0x00080052


def _key(keyword: str) -> tuple[int, str] | None:
    """(tag, VR) of a dictionary keyword with a text or sequence VR; ``None`` otherwise."""
    found = keyword_tag_vr(keyword)
    if found is None or (found[1] not in TEXT_VRS and found[1] != "SQ"):
        return None
    return int(found[0], 16), found[1]


def _json_text(elem: dict[str, Any], vr: str) -> str | None:
    """A DICOM JSON element (PS3.18 F.2) as its DICOM string value, or ``None`` if not plain text."""
    if "BulkDataURI" in elem or "InlineBinary" in elem:
        return ""
    values = elem.get("Value")
    if not values:
        return ""
    out: list[str] = []
    for v in values:
        if vr == "PN":
            if not isinstance(v, dict):
                return None
            groups = [v.get("Alphabetic", ""), v.get("Ideographic", ""), v.get("Phonetic", "")]
            while groups and not groups[-1]:
                groups.pop()
            out.append("=".join(groups))
        elif isinstance(v, str) or (vr in NUMBER_TEXT and isinstance(v, (int, float)) and not isinstance(v, bool)):
            out.append(str(v))
        else:
            return None
    return "\\".join(out)


def _text(value: Any, vr: str) -> str | None:
    """A record value (tag string, computed number/list) as a DICOM string value."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value if not (vr in NUMBER_TEXT and v == "")]
        return "\\".join(items)
    return None


def _element(tag: int, vr: str, value: bytes, implicit: bool) -> bytes:
    if implicit:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, len(value)) + value
    if vr in LONG_VRS:
        return _EXPLICIT_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError("value too long for a 16-bit length")
    return _EXPLICIT_SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def record_to_identifier_bytes(
    record: dict[str, Any], requested: list[str], level: QueryLevel, *, implicit: bool
) -> bytes | None:
    """The encoded response identifier for ``record`` (see :func:`mappings.dicom_query.record_to_identifier`),
    or ``None`` when only the Dataset path can write it."""
    tags: dict[str, str] = record.get("tags", {})
    computed: dict[str, Any] = record.get("computed", {})
    metadata: dict[str, Any] | None = record.get("metadata")
    elements: list[tuple[int, str, str]] = [(_QRL_TAG, "CS", level.name)]
    for keyword in requested:
        if keyword == "QueryRetrieveLevel":
            continue
        key = _key(keyword)
        if key is None:
            try:
                dictionary_VR(keyword)
            except (KeyError, ValueError):
                continue  # private or unknown: not returned, as the Dataset path does
            return None
        tag, vr = key
        if vr == "SQ":
            if metadata is not None and (metadata.get(f"{tag:08X}") or {}).get("Value"):
                return None  # items to return: the Dataset path writes them
            elements.append((tag, vr, ""))
            continue
        text: str | None
        if keyword in computed:
            text = _text(computed[keyword], vr)
        elif metadata is not None and (elem := metadata.get(f"{tag:08X}")) is not None:
            text = _json_text(elem, vr)
        else:
            text = _text(tags.get(keyword), vr)
        if text is None or not text.isascii():
            return None
        elements.append((tag, vr, text))
    elements.sort(key=lambda e: e[0])
    out: list[bytes] = []
    last = -1
    for tag, vr, text in elements:
        if tag == last:
            continue  # a keyword asked twice
        last = tag
        raw = text.encode("ascii")
        if len(raw) % 2:
            raw += b"\x00" if vr == "UI" else b" "
        out.append(_element(tag, vr, raw, implicit))
    return b"".join(out)
