"""Value conversions shared by the HL7 <-> DICOM mappings (mapping-reference §1.2, §1.6, §4.8, §4.10).

HL7 TS/DTM -> DICOM DA/TM + Timezone Offset From UTC; XPN/XCN/CNN -> DICOM PN (suffix/prefix swap, degree
appended to the suffix) and back; DICOM JSON (PS3.18 F.2) element builders; VR length limits with the
configured overflow policy (reject with ERR 102, or truncate).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mappings.hl7_message import Hl7ParseError, MshInfo, Segment

log = logging.getLogger(__name__)

MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "UI": 64, "DA": 8, "DS": 16, "ST": 1024,
           "LT": 10240}
_TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?")
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
# HL7 table 0360 (degree) codes seen in XPN-6; used to put a PN suffix back into XPN-6 on output
_DEGREES = {"PHD", "MD", "DO", "DDS", "DMD", "RN", "BS", "BA", "MS", "MA", "MBA", "JD", "PHARMD", "DVM", "MPH",
            "MSN", "BSN", "NP", "PA", "LPN", "CNA", "EMT", "CPA", "ED", "ENG", "DR", "PROF"}


@dataclass(frozen=True)
class Hl7Time:
    """An HL7 timestamp split for DICOM: DA (8 digits or "" below day precision), TM, "+hhmm" offset."""

    date: str
    time: str
    offset: str

    @property
    def dicom_datetime(self) -> str:
        """DT value (date + time + offset)."""
        return self.date + self.time + self.offset


def parse_ts(value: str, location: str, header: MshInfo | None = None) -> Hl7Time | None:
    """HL7 TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`` -> ``Hl7Time``; None when empty; ERR 102 if invalid."""
    value = value.strip()
    if not value:
        return None
    m = _TS.fullmatch(value)
    if not m:
        raise Hl7ParseError("102", location, "invalid date/time", header)
    year, month, day, hour, minute, second, frac, offset = m.groups()
    try:
        datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise Hl7ParseError("102", location, "impossible date/time", header) from exc
    if offset and (int(offset[1:3]) > 14 or int(offset[3:]) > 59):
        raise Hl7ParseError("102", location, "invalid time zone offset", header)
    date = f"{year}{month}{day}" if day else ""
    time = "".join(p for p in (hour, minute, second) if p) + (frac if frac and second else "")
    return Hl7Time(date, time, offset or "")


def valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, no leading zero per component, at most 64 characters."""
    return len(uid) <= 64 and bool(_UID.fullmatch(uid))


class Fitter:
    """Apply the VR length limits: ``overflow`` "reject" raises ERR 102 at the location, "truncate" cuts."""

    def __init__(self, overflow: str, header: MshInfo | None = None) -> None:
        self.overflow = overflow
        self.header = header

    def __call__(self, value: str, vr: str, location: str) -> str:
        limit = MAX_LEN.get(vr)
        if not limit:
            return value
        if vr == "PN":
            groups = value.split("=")
            if all(len(g) <= limit for g in groups):
                return value
            return "=".join(self._cut(g, limit, vr, location) for g in groups)
        return self._cut(value, limit, vr, location) if len(value) > limit else value

    def _cut(self, value: str, limit: int, vr: str, location: str) -> str:
        if len(value) <= limit:
            return value
        if self.overflow == "truncate":
            log.warning("value at %s longer than %s allows (%d > %d): truncated", location, vr, len(value), limit)
            return value[:limit].rstrip("^ ")
        raise Hl7ParseError("102", location, f"value longer than {vr} allows ({limit})", self.header)


def _pn_part(text: str) -> str:
    return text.replace("^", " ").replace("=", " ").replace("\\", " ").strip()


def pn_from_parts(family: str, given: str, middle: str, suffix: str, prefix: str, degree: str) -> str:
    """XPN order (family, given, middle, suffix, prefix, degree) -> DICOM PN ``family^given^middle^prefix^suffix``."""
    suffix = " ".join(p for p in (suffix.strip(), degree.strip()) if p)
    return "^".join(_pn_part(p) for p in (family, given, middle, prefix, suffix)).rstrip("^")


def xpn_to_pn(seg: Segment, n: int, r: int = 1) -> str:
    """PID-5 style XPN (XPN-1 may be an FN with subcomponents: its first one is the surname) -> PN."""
    return pn_from_parts(seg.get(n, 1, 1, r), *(seg.get(n, c, 0, r) for c in (2, 3, 4, 5, 6)))


def xcn_to_pn(seg: Segment, n: int, r: int = 1) -> str:
    """XCN (XCN-1 is an ID, the name starts at XCN-2) -> PN."""
    return pn_from_parts(seg.get(n, 2, 1, r), *(seg.get(n, c, 0, r) for c in (3, 4, 5, 6, 7)))


def cnn_to_pn(seg: Segment, n: int, r: int = 1) -> str:
    """NDL-1 / CNN in subcomponents (OBR-32/34: ``ID&family&given&middle&suffix&prefix&degree``) -> PN."""
    return pn_from_parts(*(seg.get(n, 1, s, r) for s in (2, 3, 4, 5, 6, 7)))


def pn_to_xpn_parts(pn: str) -> list[str]:
    """DICOM PN (alphabetic group) -> XPN components family, given, middle, suffix, prefix, degree.

    The inverse of ``pn_from_parts``: trailing suffix words that are degrees (table 0360) go back to XPN-6.
    """
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = parts
    words = suffix.split()
    degree: list[str] = []
    while words and words[-1].upper().replace(".", "") in _DEGREES:
        degree.insert(0, words.pop())
    return [family, given, middle, " ".join(words), prefix, " ".join(degree)]


def elem(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element; without non-empty values it is present with zero length (``{"vr": VR}``)."""
    vals = [v for v in values if v not in ("", None)]
    return {"vr": vr, "Value": vals} if vals else {"vr": vr}


def pn_elem(*names: str) -> dict[str, Any]:
    """A PN element from DICOM PN strings (``A=I=P`` groups split into the JSON object)."""
    vals = []
    for name in names:
        if not name:
            continue
        groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), name.split("="), strict=False))
        vals.append({k: v for k, v in groups.items() if v})
    return {"vr": "PN", "Value": vals} if vals else {"vr": "PN"}


def seq_elem(*items: dict[str, Any] | None) -> dict[str, Any]:
    """An SQ element from the non-empty items; no item -> present, empty."""
    vals = [i for i in items if i]
    return {"vr": "SQ", "Value": vals} if vals else {"vr": "SQ"}


def code_item(value: str, scheme: str, meaning: str) -> dict[str, Any] | None:
    """A code sequence item (0008,0100)/(0008,0102)/(0008,0104), only when all three are known."""
    if not (value and scheme and meaning):
        return None
    return {"00080100": elem("SH", value), "00080102": elem("SH", scheme), "00080104": elem("LO", meaning)}


def hd_item(namespace: str, universal_id: str, universal_type: str) -> dict[str, Any] | None:
    """An HD as an issuer item: (0040,0031) Local Namespace, (0040,0032) Universal Entity ID, (0040,0033)."""
    item = {}
    if namespace:
        item["00400031"] = elem("UT", namespace)
    if universal_id:
        item["00400032"] = elem("UT", universal_id)
    if universal_type:
        item["00400033"] = elem("CS", universal_type)
    return item or None


def number(text: str) -> int | float | None:
    """A DS value as a JSON number (whole numbers as int); None when not numeric."""
    try:
        val = float(text)
    except ValueError:
        return None
    return int(val) if val.is_integer() else val


def value_of(attrs: dict[str, Any], tag: str) -> Any:
    """First value of a DICOM JSON element (PN as its alphabetic string), "" when absent or empty."""
    vals = attrs.get(tag, {}).get("Value") or [""]
    first = vals[0]
    return first.get("Alphabetic", "") if isinstance(first, dict) and attrs[tag].get("vr") == "PN" else first
