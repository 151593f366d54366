"""HL7 MSH-18 character set (table 0211) <-> DICOM Specific Character Set (0008,0005) <-> Python codec.

Table of mapping-reference §1.8 (dcm4chee ``tab_hl7_dicom_charset``) plus the aliases real senders put in
MSH-18 (``UTF-8``, ``ISO-8859-1``, ``latin-1``..., quirk 4.3). Multi-byte UCS-2/UTF-16 is not supported: it
breaks single-byte MLLP framing.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Charset:
    """One row: the canonical MSH-18 value, the DICOM defined term and the codec used to decode bytes."""

    msh18: str
    dicom: str
    codec: str


_ROWS = (
    Charset("ASCII", "", "ascii"),
    Charset("8859/1", "ISO_IR 100", "iso8859-1"),
    Charset("8859/2", "ISO_IR 101", "iso8859-2"),
    Charset("8859/3", "ISO_IR 109", "iso8859-3"),
    Charset("8859/4", "ISO_IR 110", "iso8859-4"),
    Charset("8859/5", "ISO_IR 144", "iso8859-5"),
    Charset("8859/6", "ISO_IR 127", "iso8859-6"),
    Charset("8859/7", "ISO_IR 126", "iso8859-7"),
    Charset("8859/8", "ISO_IR 138", "iso8859-8"),
    Charset("8859/9", "ISO_IR 148", "iso8859-9"),
    Charset("8859/15", "ISO_IR 203", "iso8859-15"),
    Charset("ISO IR14", "ISO_IR 13", "shift_jis"),
    Charset("ISO IR87", "ISO 2022 IR 87", "iso2022_jp"),
    Charset("ISO IR159", "ISO 2022 IR 159", "iso2022_jp_2"),
    Charset("KS X 1001", "ISO 2022 IR 149", "euc_kr"),
    Charset("UNICODE UTF-8", "ISO_IR 192", "utf-8"),
    Charset("GB 18030-2000", "GB18030", "gb18030"),
)

# Windows-1252 is what "Latin-1" senders really send; DICOM has no term for it, ISO_IR 100 is the closest.
_CP1252 = Charset("8859/1", "ISO_IR 100", "cp1252")


def _key(value: str) -> str:
    return re.sub(r"[\s_\-/.]", "", value.upper())


_BY_KEY: dict[str, Charset] = {}
for _row in _ROWS:
    _BY_KEY[_key(_row.msh18)] = _row
    if _row.dicom:
        _BY_KEY[_key(_row.dicom)] = _row
    _BY_KEY[_key(codecs.lookup(_row.codec).name)] = _row
for _n in range(1, 10):
    _row = _BY_KEY[_key(f"8859/{_n}")]
    for _alias in (f"ISO-8859-{_n}", f"ISO8859-{_n}", f"ISO_8859-{_n}"):
        _BY_KEY[_key(_alias)] = _row
_BY_KEY.update(
    {
        _key("UTF-8"): _BY_KEY[_key("UNICODE UTF-8")],
        _key("UTF8"): _BY_KEY[_key("UNICODE UTF-8")],
        _key("LATIN1"): _BY_KEY[_key("8859/1")],
        _key("LATIN-1"): _BY_KEY[_key("8859/1")],
        _key("US-ASCII"): _BY_KEY[_key("ASCII")],
        _key("GB18030"): _BY_KEY[_key("GB 18030-2000")],
        _key("ISO-8859-15"): _BY_KEY[_key("8859/15")],
        _key("WINDOWS-1252"): _CP1252,
        _key("CP1252"): _CP1252,
    }
)
_BY_DICOM = {row.dicom: row for row in _ROWS}


def charset_for_msh18(value: str) -> Charset | None:
    """The row for an MSH-18 value or alias (case, blanks and separators ignored); ``None`` if unknown."""
    return _BY_KEY.get(_key(value)) if value.strip() else None


def charset_for_codec(codec: str) -> Charset:
    """The row for a Python codec name (the per-sender default when MSH-18 is empty)."""
    name = codecs.lookup(codec).name
    row = _BY_KEY.get(_key(name))
    if row is not None and codecs.lookup(row.codec).name == name:
        return row
    if name == "cp1252":
        return _CP1252
    raise LookupError(f"no DICOM character set for codec {codec!r}")


def charset_for_dicom(term: str) -> Charset:
    """The row for a DICOM Specific Character Set value (first value when multi-valued; "" = ASCII)."""
    first = term.split("\\")[0].strip()
    row = _BY_DICOM.get(first)
    if row is None:
        raise LookupError(f"unsupported DICOM character set {term!r}")
    return row


def msh18_to_dicom(value: str) -> str:
    """MSH-18 -> (0008,0005) defined term ("" for ASCII or an unknown value)."""
    row = charset_for_msh18(value)
    return row.dicom if row else ""


def dicom_to_msh18(term: str) -> str:
    """(0008,0005) -> MSH-18 table 0211 value ("" for the default repertoire)."""
    row = charset_for_dicom(term)
    return "" if row.msh18 == "ASCII" else row.msh18
