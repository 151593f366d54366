"""ASCII checks for values read from the wire: ``str.isdigit`` also accepts ``²`` and other Unicode digits, which
``int()`` then refuses (a 500 where the protocol wants its own error)."""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """True when ``text`` is one or more ASCII digits 0-9 (what DICOM, HL7 and FHIR mean by a number)."""
    return text.isascii() and text.isdigit()


def row_id(text: str) -> int | None:
    """``text`` as a database row id: ASCII digits that fit a signed 64-bit column, else None (a longer id
    overflows SQLite and PostgreSQL BIGINT parameters, which is not a reason for a 500)."""
    return int(text) if is_digits(text) and len(text) <= 18 else None
