"""Bytes of one HL7 v2 message -> ``ParsedMessage`` with escape-aware field access (HL7 v2.5 ch. 2).

Implements the parser side of mapping-reference §4: CR segment terminator (LF/CRLF only when the message
has no CR), stray MLLP bytes removed, encoding characters read from MSH-2 (four, or five with the v2.7
truncation character), bytes decoded with the codec named by MSH-18 (else a per-sender default), escape
sequences resolved per component (§2.7 of the standard), and ``""`` (explicit null) told apart from an empty
field. hl7apy (tolerant, without group detection, so Z-segments and version drift pass) is the library of
record that checks the segment syntax; the hl7apy message is kept on ``ParsedMessage.hl7apy``.
Errors are ``Hl7ParseError`` with an HL7 table 0357 code and an ERR-2 style location (``PID^1^3``);
their messages never contain field values (they end up in logs).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import ChildNotFound, HL7apyException, InvalidName
from hl7apy.parser import parse_message

from mappings.ascii import is_digits
from mappings.hl7_charsets import charset_for_codec, charset_for_msh18

TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2")
NULL = '""'
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


@dataclass(frozen=True)
class Delimiters:
    """MSH-1 and MSH-2: field, component, repetition, escape, subcomponent and (v2.7+) truncation."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as written."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


@dataclass(frozen=True)
class MshInfo:
    """The MSH fields the hub routes and acknowledges on (values unescaped)."""

    delimiters: Delimiters = field(default_factory=Delimiters)
    sending_application: str = ""  # MSH-3.1
    sending_facility: str = ""  # MSH-4.1
    receiving_application: str = ""  # MSH-5.1
    receiving_facility: str = ""  # MSH-6.1
    timestamp: str = ""  # MSH-7.1
    message_type: str = ""  # MSH-9.1
    trigger_event: str = ""  # MSH-9.2
    message_structure: str = ""  # MSH-9.3
    control_id: str = ""  # MSH-10
    processing_id: str = ""  # MSH-11.1
    version: str = ""  # MSH-12.1
    charset: str = ""  # MSH-18 (first repetition) as sent
    codec: str = "iso8859-1"  # Python codec the message was decoded with

    @property
    def message_code(self) -> str:
        """``ORM^O01`` (type and trigger, structure left out)."""
        return f"{self.message_type}^{self.trigger_event}"


class Hl7ParseError(Exception):
    """A message the hub cannot accept: HL7 table 0357 ``code``, ERR-2 ``location`` (``SEG^seq^field^comp``)."""

    def __init__(self, code: str, location: str, message: str, header: MshInfo | None = None) -> None:
        super().__init__(f"{code} {TABLE_0357.get(code, '')} at {location or '?'}: {message}")
        self.code = code
        self.location = location
        self.message = message
        self.header = header  # what could be read of MSH, for the ACK; None when MSH was unreadable


def version_tuple(version: str) -> tuple[int, ...]:
    """``"2.3.1"`` -> ``(2, 3, 1)``; unparsable parts count as 0."""
    return tuple(int(p) if is_digits(p) else 0 for p in version.split("."))


def unescape(text: str, delims: Delimiters, codec: str = "iso8859-1") -> str:
    """Resolve HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\.br\\ \\.sp\\ \\Xhh\\; others dropped)."""
    esc = delims.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        end = text.find(esc, i + 1) if ch == esc else -1
        if ch != esc or end < 0:
            out.append(ch)
            i += 1
            continue
        seq = text[i + 1 : end]
        simple = {"F": delims.field, "S": delims.component, "T": delims.subcomponent, "R": delims.repetition,
                  "E": esc, "P": delims.truncation, ".br": "\n", "H": "", "N": ""}
        if seq in simple:
            out.append(simple[seq])
        elif seq.startswith(".sp"):
            out.append("\n" * (int(seq[3:].strip()) if is_digits(seq[3:].strip()) else 1))
        elif seq[:1] == "X" and len(seq) > 1 and len(seq) % 2 == 1 and re.fullmatch(r"[0-9A-Fa-f]+", seq[1:]):
            out.append(bytes.fromhex(seq[1:]).decode(codec, errors="replace"))
        elif seq[:1] in ("C", "M", "Z") or seq.startswith("."):
            pass  # character set switches, locally defined and formatting commands carry no text
        else:
            out.append(text[i : end + 1])  # not an escape sequence we know: keep it literally
        i = end + 1
    return "".join(out)


def escape(text: str, delims: Delimiters) -> str:
    """Inverse of ``unescape`` for text written into one component or subcomponent."""
    esc = delims.escape
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in ((delims.field, "F"), (delims.component, "S"), (delims.subcomponent, "T"),
                       (delims.repetition, "R"), (delims.truncation, "P")):
        if char:
            out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r\n", "\n").replace("\n", f"{esc}.br{esc}").replace("\r", f"{esc}X0D{esc}")


class Segment:
    """One segment; ``fields[n]`` is SEG-n as raw ER7 (for MSH, ``fields[1]`` is the field separator)."""

    def __init__(self, fields: list[str], seq: int, delims: Delimiters, codec: str) -> None:
        self.name = fields[0]
        self.fields = fields
        self.seq = seq  # 1-based occurrence among segments of the same name (ERR-2.2)
        self.delims = delims
        self.codec = codec

    def __repr__(self) -> str:
        return f"<Segment {self.name}^{self.seq}>"

    def raw(self, n: int, c: int = 0, s: int = 0, r: int = 1) -> str:
        """Raw (escaped) text of SEG-n[.c[.s]], repetition ``r``; "" when absent."""
        value = self.fields[n] if n < len(self.fields) else ""
        if self.name == "MSH" and n <= 2:
            return value
        reps = value.split(self.delims.repetition)
        value = reps[r - 1] if r <= len(reps) else ""
        if c:
            comps = value.split(self.delims.component)
            value = comps[c - 1] if c <= len(comps) else ""
            if s:
                subs = value.split(self.delims.subcomponent)
                value = subs[s - 1] if s <= len(subs) else ""
        return value

    def get(self, n: int, c: int = 0, s: int = 0, r: int = 1) -> str:
        """Unescaped value of SEG-n[.c[.s]] (repetition ``r``); "" when empty or explicit null."""
        value = self.raw(n, c, s, r)
        return "" if value == NULL else unescape(value, self.delims, self.codec)

    def is_null(self, n: int, c: int = 0, s: int = 0, r: int = 1) -> bool:
        """True when the element is the HL7 null ``""`` ("delete the stored value")."""
        return self.raw(n, c, s, r) == NULL

    def repetition_count(self, n: int) -> int:
        """How many repetitions SEG-n has (0 when empty)."""
        value = self.fields[n] if n < len(self.fields) else ""
        return len(value.split(self.delims.repetition)) if value else 0

    def components(self, n: int, r: int = 1) -> list[str]:
        """Unescaped components of one repetition of SEG-n."""
        value = self.raw(n, r=r)
        return [unescape(c, self.delims, self.codec) for c in value.split(self.delims.component)] if value else []

    def location(self, n: int = 0, c: int = 0, s: int = 0) -> str:
        """ERR-2 style location ``SEG^seq^field^comp^sub``."""
        parts = [self.name, str(self.seq)] + [str(p) for p in (n, c, s) if p]
        return "^".join(parts)


@dataclass
class ParsedMessage:
    """A decoded message: header, segments in order, the charset used and the hl7apy message."""

    header: MshInfo
    segments: list[Segment]
    dicom_charset: str  # (0008,0005) for the message's text ("" = default repertoire)
    _build: Any = field(default=None, repr=False, compare=False)  # makes the hl7apy message on first use
    _hl7apy: Any = field(default=None, repr=False, compare=False)

    @property
    def hl7apy(self) -> Any:  # noqa: ANN401 - hl7apy.core.Message
        """The hl7apy message (built on first use: the mapping reads the segments, not this)."""
        if self._hl7apy is None and self._build is not None:
            self._hl7apy = self._build()
        return self._hl7apy

    def all(self, name: str) -> list[Segment]:
        """Every segment with that ID, in message order."""
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        """The first segment with that ID."""
        return next((s for s in self.segments if s.name == name), None)

    @property
    def delimiters(self) -> Delimiters:
        return self.header.delimiters

    @property
    def message_type(self) -> str:
        return self.header.message_type

    @property
    def trigger_event(self) -> str:
        return self.header.trigger_event

    @property
    def control_id(self) -> str:
        return self.header.control_id

    @property
    def version(self) -> str:
        return self.header.version


def _delimiters(data: bytes) -> Delimiters:
    if len(data) < 8 or not data.startswith(b"MSH"):
        raise Hl7ParseError("100", "MSH^1", "message does not start with an MSH segment")
    sep = chr(data[3])
    if sep.isalnum() or sep in "\r\n \t":
        raise Hl7ParseError("102", "MSH^1^1", "invalid field separator")
    end = data.find(sep.encode("latin-1"), 4)
    enc = data[4:end if end > 0 else len(data)].split(b"\r")[0].split(b"\n")[0].decode("latin-1")
    if len(enc) not in (4, 5) or len(set(enc + sep)) != len(enc) + 1 or any(c.isalnum() or c.isspace() for c in enc):
        raise Hl7ParseError("102", "MSH^1^2", "invalid encoding characters")
    return Delimiters(sep, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else "")


def _split_segments(text: str) -> list[str]:
    if "\r" in text:  # CR terminates; an LF right after it (CRLF files) is dropped, LF inside text is data
        parts = [p[1:] if p.startswith("\n") else p for p in text.split("\r")]
    else:
        parts = text.split("\n")
    return [p for p in parts if p.strip()]


def _header(msh: Segment, codec: str) -> MshInfo:
    return MshInfo(
        delimiters=msh.delims, sending_application=msh.get(3, 1), sending_facility=msh.get(4, 1),
        receiving_application=msh.get(5, 1), receiving_facility=msh.get(6, 1), timestamp=msh.get(7, 1),
        message_type=msh.get(9, 1), trigger_event=msh.get(9, 2), message_structure=msh.get(9, 3),
        control_id=msh.get(10), processing_id=msh.get(11, 1), version=msh.get(12, 1),
        charset=msh.get(18, r=1), codec=codec,
    )


def _msh_segment(line: str, delims: Delimiters, codec: str) -> Segment:
    parts = line.split(delims.field)
    return Segment(["MSH", delims.field] + parts[1:], 1, delims, codec)


def _deframe(raw: bytes) -> bytes:
    """Drop the MLLP frame (0x0B ... 0x1C 0x0D) and stray framing bytes left in the payload (quirk 4.2)."""
    data = raw[:-2] if raw.endswith(b"\x1c\r") else raw
    return data.replace(b"\x0b", b"").replace(b"\x1c", b"").lstrip(b"\r\n\t ")


def peek_header(raw: bytes, default_charset: str = "latin-1") -> MshInfo | None:
    """Best-effort MSH of bytes that may not parse (for the AR of a rejected message); None if unreadable."""
    data = _deframe(raw)
    try:
        delims = _delimiters(data)
    except Hl7ParseError:
        return None
    line = re.split(rb"[\r\n]", data, maxsplit=1)[0].decode(default_charset, errors="replace")
    return _header(_msh_segment(line, delims, default_charset), default_charset)


@functools.lru_cache(maxsize=4096)
def _known_segment(name: str, version: str) -> bool:
    """Whether hl7apy's reference of ``version`` defines segment ``name`` (Z-segments are site-defined)."""
    if name.startswith("Z"):
        return True
    try:
        load_reference(name, "Segment", version)
    except (ChildNotFound, HL7apyException, ValueError, KeyError):
        return False
    return True


def _check_segments(segments: list[Segment], version: str, header: MshInfo) -> None:
    """Every segment ID must exist in hl7apy's reference of the message's version, or of a later one
    (version drift: a v2.3 message may carry TQ1/IPC; IHE accepts a conforming structure)."""
    tries = [version] + [v for v in ("2.5.1", "2.8.2") if version_tuple(v) > version_tuple(version)]
    for seg in segments[1:]:
        if not any(_known_segment(seg.name, v) for v in tries):
            raise Hl7ParseError("100", seg.location(), "segment unknown to this HL7 version", header)


def _hl7apy_parse(segments: list[Segment], delims: Delimiters, version: str, header: MshInfo) -> Any:
    msh = segments[0]
    enc4 = delims.encoding_characters[:4]  # hl7apy knows only four encoding characters
    body = [delims.field.join(s.fields) for s in segments[1:]]
    tries = [version] + [v for v in ("2.5.1", "2.8.2") if version_tuple(v) > version_tuple(version)]
    last: Exception | None = None
    for attempt in tries:  # version drift: a v2.3 message may carry TQ1/IPC; retry with a later reference
        msh_fields = msh.fields[3:12] + [attempt] + msh.fields[13:]
        text = "\r".join(["MSH" + delims.field + enc4 + delims.field + delims.field.join(msh_fields), *body])
        try:
            return parse_message(text + "\r", find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
        except InvalidName as exc:
            last = exc
        except (HL7apyException, TypeError, ValueError, AttributeError) as exc:  # hl7apy reference-table bugs
            last = exc
    if isinstance(last, InvalidName):
        seg = next((s for s in segments if s.name == str(last.name)), None)
        raise Hl7ParseError("100", seg.location() if seg else "", "segment unknown to this HL7 version", header)
    raise Hl7ParseError("100", "", f"message structure not readable ({type(last).__name__})", header)


def parse_hl7(raw: bytes, default_charset: str = "latin-1") -> ParsedMessage:
    """Decode and split one HL7 v2 message; raise ``Hl7ParseError`` (codes of table 0357) when unreadable."""
    data = _deframe(raw)
    delims = _delimiters(data)
    first_line = re.split(rb"[\r\n]", data, maxsplit=1)[0]
    msh = _msh_segment(first_line.decode("latin-1"), delims, "iso8859-1")
    charset_value = msh.get(18, r=1)
    row = charset_for_msh18(charset_value) if charset_value else charset_for_codec(default_charset)
    header = _header(msh, row.codec if row else default_charset)
    if row is None:
        raise Hl7ParseError("103", "MSH^1^18", "unsupported character set", header)
    try:
        text = data.decode(row.codec)
    except UnicodeDecodeError as exc:
        raise Hl7ParseError("102", "MSH^1^18", "bytes do not match the character set", header) from exc
    lines = _split_segments(text)
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for pos, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or line[3:4] not in ("", delims.field):
            raise Hl7ParseError("100", "", f"segment {pos} has no valid segment ID", header)
        if name == "MSH" and pos > 1:
            raise Hl7ParseError("100", f"MSH^{counts.get('MSH', 0) + 1}", "more than one MSH (batches unsupported)",
                                header)
        counts[name] = counts.get(name, 0) + 1
        if pos == 1:
            segments.append(_msh_segment(line, delims, row.codec))
        else:
            segments.append(Segment(line.split(delims.field), counts[name], delims, row.codec))
    header = _header(segments[0], row.codec)
    if not header.message_type:
        raise Hl7ParseError("101", "MSH^1^9", "message type missing", header)
    if not header.control_id:
        raise Hl7ParseError("101", "MSH^1^10", "message control id missing", header)
    if not header.version:
        raise Hl7ParseError("101", "MSH^1^12", "version id missing", header)
    if header.version not in SUPPORTED_VERSIONS:
        raise Hl7ParseError("203", "MSH^1^12", "unsupported HL7 version", header)
    _check_segments(segments, header.version, header)
    return ParsedMessage(header=header, segments=segments, dicom_charset=row.dicom,
                         _build=lambda: _hl7apy_parse(segments, delims, header.version, header))
