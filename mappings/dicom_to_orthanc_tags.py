"""pydicom Dataset -> Orthanc's JSON of the tags (``/instances/{id}/tags``, ``/simplified-tags``, ``/header``).

Orthanc 1.10 (``FromDcmtkBridge::DatasetToJson`` with ``DicomToJsonFlags_Default`` and a maximum
string length of 256) writes, for each element, ``{"Name", "Type", "Value"}`` under its
``"gggg,eeee"`` key (lower-case hex, sorted):

* string VRs: the value with its trailing padding removed, converted to UTF-8 from the Specific
  Character Set (Latin-1 when absent); ``"TooLong"`` (``Value`` null) above 256 bytes of UTF-8;
* US/SS/UL/SL/FL/FD: the numbers written as C++ streams do, joined by ``\\``; AT: ``"gggg,eeee"``;
* binary VRs (OB, OW, OF, UN, ...) and the pixel data: ``"Null"``; a UN element whose dictionary VR
  is a string is read as that string (DICOM CP 246);
* sequences: ``"Sequence"`` with a list of item objects;
* private elements also carry ``"PrivateCreator"``; group lengths and elements after the pixel
  data are left out.

Names come from a DCMTK-style data dictionary (:class:`TagDictionary`), as Orthanc takes them from
DCMTK's ``dicom.dic`` and ``private.dic``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydicom import charset
from pydicom.datadict import dictionary_is_retired, dictionary_VR, get_private_entry, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

MAX_STRING_LENGTH = 256  # ORTHANC_MAXIMUM_TAG_LENGTH
UNKNOWN_NAME = "Unknown Tag & Data"  # DcmTag_ERROR_TagName
PIXEL_DATA = 0x7FE00010
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN", "ox", "OB or OW"}
STRING_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
NUMBER_FORMATS = {"US": ("H", 2, "d"), "SS": ("h", 2, "d"), "UL": ("I", 4, "d"), "SL": ("i", 4, "d"),
                  "FL": ("f", 4, ".17g"), "FD": ("d", 8, ".17g")}
JIS_X_0201_ROMAN = {0x5C: "\u00a5", 0x7E: "\u203e"}
# Orthanc's patches over the DCMTK names of a few main tags (FromDcmtkBridge::GetTagNameInternal).
NAME_PATCHES = {0x00101000: "OtherPatientIDs"}

Json = dict[str, Any]


# --------------------------------------------------------------------------- dictionary
@dataclass(frozen=True)
class DictEntry:
    vr: str
    name: str


@dataclass
class TagDictionary:
    """The public and private data dictionary Orthanc sees (DCMTK's); pydicom's as the fallback."""

    public: dict[int, DictEntry] = field(default_factory=dict)
    ranges: list[tuple[int, int, int, int, int, int, DictEntry]] = field(default_factory=list)
    private: dict[tuple[str, int, int], DictEntry] = field(default_factory=dict)
    loaded: bool = False

    @classmethod
    def from_dcmtk(cls, texts: Iterable[str]) -> TagDictionary:
        """Parse the text of DCMTK ``.dic`` files (``(gggg,eeee) VR Name VM Version`` lines;
        ranges ``gggg-gggg`` with ``-o-``/``-u-`` for odd/all; private ``(gggg,"creator",xx)``)."""
        d = cls(loaded=True)
        for text in texts:
            for line in text.splitlines():
                if not line.startswith("("):
                    continue
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                # DCMTK strips every blank from the fields (dcdict.cc, stripWhitespace).
                key, vr, name = parts[0], re.sub(r"\s", "", parts[1]), re.sub(r"\s", "", parts[2])
                entry = DictEntry(vr, name)
                m = re.fullmatch(r'\(([0-9A-Fa-f]{4}),"([^"]*)",([0-9A-Fa-f]{2,4})\)', key)
                if m:
                    d.private[(m.group(2), int(m.group(1), 16), int(m.group(3), 16))] = entry
                    continue
                m = re.fullmatch(r"\(([0-9A-Fa-f-ou]+),([0-9A-Fa-f-ou]+)\)", key)
                if not m or '"' in key:
                    continue
                (g0, g1, gs), (e0, e1, es) = _range(m.group(1)), _range(m.group(2))
                if g0 == g1 and e0 == e1:
                    d.public[(g0 << 16) | e0] = entry
                else:
                    d.ranges.append((g0, g1, gs, e0, e1, es, entry))
        return d

    def lookup(self, tag: int, creator: str | None) -> DictEntry | None:
        """The entry of ``tag`` (a private one needs its creator); None when unknown."""
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 and group != 0x0002:
            return DictEntry("UL", "PrivateGroupLength" if group % 2 else "GenericGroupLength")
        if group % 2 == 1:
            if 0x0010 <= elem <= 0x00FF:
                return DictEntry("LO", "PrivateCreator")
            if creator is None:
                return None
            if self.loaded:
                return self.private.get((creator, group, elem & 0xFF)) or self.private.get((creator, group, elem))
            try:
                vr, _vm, desc, _ = get_private_entry(tag, creator)
            except KeyError:
                return None
            words = re.split(r"[^A-Za-z0-9]+", desc)
            return DictEntry(vr, "".join(w[:1].upper() + w[1:] for w in words if w) or "Unknown")
        if self.loaded:
            found = self.public.get(tag)
            if found:
                return found
            for g0, g1, gs, e0, e1, es, entry in self.ranges:
                if g0 <= group <= g1 and e0 <= elem <= e1 and (group - g0) % gs == 0 and (elem - e0) % es == 0:
                    return entry
            return None
        keyword = keyword_for_tag(tag)
        if not keyword:
            return None
        return DictEntry(dictionary_VR(tag), ("RETIRED_" if dictionary_is_retired(tag) else "") + keyword)

    def name(self, tag: int, creator: str | None) -> str:
        if tag in NAME_PATCHES:
            return NAME_PATCHES[tag]
        entry = self.lookup(tag, creator)
        return entry.name if entry else UNKNOWN_NAME


def _range(text: str) -> tuple[int, int, int]:
    """``gggg`` or ``gggg-gggg`` (even steps), ``gggg-o-gggg`` (odd), ``gggg-u-gggg`` (all)."""
    parts = text.split("-")
    if len(parts) == 1:
        v = int(parts[0], 16)
        return v, v, 1
    if len(parts) == 3:
        return int(parts[0], 16), int(parts[2], 16), 1 if parts[1] == "u" else 2
    return int(parts[0], 16), int(parts[1], 16), 2


# --------------------------------------------------------------------------- conversion
@dataclass(frozen=True)
class _Context:
    names: TagDictionary
    encodings: list[str]
    max_length: int
    pixel_representation: int
    ignore_length: frozenset[int] = frozenset()


def dataset_to_orthanc_tags(ds: Dataset, names: TagDictionary, *, pixel_data_tag: int | None = None,
                            max_length: int = MAX_STRING_LENGTH, ignore_length: frozenset[int] = frozenset()) -> Json:
    """Orthanc's "full" JSON of a data set (``/instances/{id}/tags``).

    ``ds`` may stop before the pixel data (:func:`hub.dicomfile.read_header`); ``pixel_data_tag``
    then names the pixel data element that followed, which Orthanc lists as ``Null``. Tags in
    ``ignore_length`` (``?ignore-length=``) are shown whatever their length.
    """
    encodings = _encodings(ds)
    pr = ds.get("PixelRepresentation", 0)
    ctx = _Context(names, encodings, max_length, pr if isinstance(pr, int) else 0, ignore_length)
    out = _item_to_json(ds, ctx, top=True, full=True)
    if pixel_data_tag is not None and pixel_data_tag <= PIXEL_DATA and tag_key(pixel_data_tag) not in out:
        out[tag_key(pixel_data_tag)] = {"Name": names.name(pixel_data_tag, None), "Type": "Null", "Value": None}
        out = dict(sorted(out.items()))
    return out


def file_meta_to_orthanc_header(meta: Dataset, names: TagDictionary) -> Json:
    """Orthanc's "full" JSON of the File Meta Information (``/instances/{id}/header``): flags
    ``None``, so group lengths are kept, binary and unknown elements left out, no length limit."""
    ctx = _Context(names, ["iso8859"], 0, 0)
    return _item_to_json(meta, ctx, top=True, full=False)


def simplify(full: Json) -> Json:
    """``?simplify`` / ``/simplified-tags`` (Toolbox::SimplifyDicomAsJson, "human" format): name ->
    value; null for ``Null`` and ``TooLong``; a later tag with the same name wins."""
    out: Json = {}
    for node in full.values():
        out[node["Name"]] = _simple_value(node, simplify)
    return dict(sorted(out.items()))


def shorten(full: Json) -> Json:
    """``?short``: ``"gggg,eeee"`` -> value."""
    return {key: _simple_value(node, shorten) for key, node in full.items()}


def _simple_value(node: Json, again: Any) -> Any:
    if node["Type"] == "Sequence":
        return [again(item) for item in node["Value"] or []]
    if node["Type"] == "String":
        return node["Value"]
    return None


def _encodings(ds: Dataset) -> list[str]:
    """Python codecs of the Specific Character Set (0008,0005); Latin-1 when absent, as Orthanc's
    default ``DefaultEncoding``."""
    if 0x00080005 not in ds:
        return ["iso8859"]
    data, _ = _raw_bytes(ds.get_item(BaseTag(0x00080005)), ds, 0x00080005)
    terms = [t.strip() for t in data.decode("ascii", "replace").rstrip(" \0").split("\\")] or [""]
    try:
        return charset.convert_encodings(terms)
    except Exception:  # noqa: BLE001 - unknown term: pydicom already falls back
        return ["iso8859"]


def _item_to_json(ds: Dataset, ctx: _Context, *, top: bool, full: bool) -> Json:
    """``full``: flags of ``/tags`` (binary as Null, unknown and private tags kept, nothing after the
    pixel data); else ``DicomToJsonFlags_None`` (binary, private and unknown tags left out)."""
    out: Json = {}
    for tag in sorted(ds.keys()):
        tag = int(tag)
        if top and full and tag > PIXEL_DATA:
            continue
        group, elem = tag >> 16, tag & 0xFFFF
        creator = _creator(ds, group, elem) if group % 2 == 1 and elem > 0x00FF else None
        entry = ctx.names.lookup(tag, creator)
        if not full and (group % 2 == 1 or entry is None or entry.vr in BINARY_VRS):
            continue
        raw = ds.get_item(BaseTag(tag))
        vr = _vr(raw, ds, entry, ctx)
        node: Json = {"Name": ctx.names.name(tag, creator)}
        if creator is not None:
            node["PrivateCreator"] = creator
        if vr == "SQ":
            items = ds[BaseTag(tag)].value
            node["Type"] = "Sequence"
            node["Value"] = [
                _item_to_json(item, ctx, top=False, full=full)
                for item in items
            ]
        else:
            leaf_ctx = replace(ctx, max_length=0) if tag in ctx.ignore_length else ctx
            kind, value = _leaf(raw, ds, tag, vr, entry, creator, leaf_ctx)
            node["Type"], node["Value"] = kind, value
        out[f"{group:04x},{elem:04x}"] = node
    return out


def _creator(ds: Dataset, group: int, elem: int) -> str | None:
    """The Private Creator of a private element (PS3.5 7.8.1), None when its slot is empty."""
    slot = (group << 16) | (elem >> 8)
    if slot not in ds:
        return None
    raw = ds.get_item(BaseTag(slot))
    if isinstance(raw, RawDataElement) and not raw.is_implicit_VR and raw.VR != "LO":
        return None  # DCMTK only caches creators held by LO elements
    value = raw.value if isinstance(raw, RawDataElement) else ds[BaseTag(slot)].value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value or "").rstrip(" \0") or None


def _vr(raw: Any, ds: Dataset, entry: DictEntry | None, ctx: _Context) -> str:
    """The VR DCMTK would give the element: explicit from the stream, implicit from the dictionary."""
    vr = getattr(raw, "VR", None)
    if isinstance(raw, RawDataElement) and not raw.is_implicit_VR and vr:
        return str(vr)
    if not isinstance(raw, RawDataElement) and vr and vr != "UN":
        return str(vr)
    dict_vr = entry.vr if entry else "UN"
    if dict_vr in ("xs", "US or SS"):
        return "SS" if ctx.pixel_representation == 1 else "US"
    if dict_vr in ("ox", "OB or OW", "lt", "US or SS or OW", "US or OW", "na"):
        return "OB"
    if dict_vr == "up":
        return "UL"
    return dict_vr


def _raw_bytes(raw: Any, ds: Dataset, tag: int) -> tuple[bytes, bool]:
    """(value bytes as stored, little endian?) of an element."""
    if isinstance(raw, RawDataElement):
        little = raw.is_little_endian
        value = raw.value
        if value is None and raw.length:  # deferred read
            value = ds[BaseTag(tag)].value
        if isinstance(value, bytes):
            return value, little
        raw = ds[BaseTag(tag)]
    # Already converted by pydicom (or deferred): encode it back the way it was read.
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    little = ds.is_little_endian if ds.is_little_endian is not None else True
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = little, True
    write_data_element(buf, raw)
    return bytes(buf.getvalue()[8:]), little


def _leaf(raw: Any, ds: Dataset, tag: int, vr: str, entry: DictEntry | None, creator: str | None,
          ctx: _Context) -> tuple[str, Any]:
    data, little = _raw_bytes(raw, ds, tag)
    if vr in STRING_VRS:
        pad = b"\0" if vr == "UI" else b" "
        data = data.rstrip(pad).split(b"\0", 1)[0]
        return _string(data, ctx, vr)
    if vr == "UN" and entry is not None and entry.vr in STRING_VRS:
        if data and len(data) % 2 == 0 and data[-1] == 0:
            data = data[:-1]
        if creator is None:
            return _string(data, ctx, entry.vr)
        if all(32 <= b < 127 or b in (9, 10, 13) for b in data):
            return _string(data, ctx, entry.vr, plain=True)
        return "Null", None
    if vr in NUMBER_FORMATS:
        code, size, fmt = NUMBER_FORMATS[vr]
        count = len(data) // size
        if count == 0:
            return "Null", None
        values = struct.unpack(("<" if little else ">") + code * count, data[: count * size])
        return _check_length("\\".join(format(v, fmt) for v in values), ctx)
    if vr == "AT" and len(data) >= 4:
        g, e = struct.unpack("<HH" if little else ">HH", data[:4])
        return "String", f"{g:04x},{e:04x}"
    return "Null", None


def _string(data: bytes, ctx: _Context, vr: str, *, plain: bool = False) -> tuple[str, Any]:
    if plain or data.isascii():
        text = data.decode("ascii" if plain else "latin-1")
    else:
        delimiters = charset.TEXT_VR_DELIMS | {0x5C} | ({0x5E, 0x3D} if vr == "PN" else set())
        text = charset.decode_bytes(data, ctx.encodings, delimiters)
    if not plain and ctx.encodings[0] == "shift_jis":
        # Orthanc converts ISO_IR 13 text with Shift-JIS, whose 0x5C and 0x7E are YEN SIGN and OVERLINE.
        text = text.translate(JIS_X_0201_ROMAN)
    return _check_length(text, ctx)


def _check_length(text: str, ctx: _Context) -> tuple[str, Any]:
    if ctx.max_length and len(text.encode("utf-8")) > ctx.max_length:
        return "TooLong", None
    return "String", text


def tag_key(tag: int) -> str:
    """``0x00100010`` -> ``"0010,0010"`` as Orthanc writes it."""
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def parse_tag(text: str, names: TagDictionary | None = None) -> int | None:
    """A tag as Orthanc accepts it in a URI (``0010,0010``, ``0010-0010``, ``00100010`` or a
    keyword); None when it is neither."""
    m = re.fullmatch(r"([0-9A-Fa-f]{4})[,-]?([0-9A-Fa-f]{4})", text.strip())
    if m:
        return (int(m.group(1), 16) << 16) | int(m.group(2), 16)
    try:
        return int(Tag(text.strip()))
    except (ValueError, TypeError, OverflowError):
        return None


WORD_SIZES = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OL": 4, "OF": 4, "FD": 8, "OD": 8,
              "SV": 8, "UV": 8, "OV": 8}


def element_value_bytes(ds: Dataset, tag: int, names: TagDictionary) -> bytes:
    """The value of an element as ``/content/{path}`` streams it (DCMTK's in-memory value): the bytes
    as stored, with the words of a big-endian value swapped to little endian."""
    raw = ds.get_item(BaseTag(tag))
    data, little = _raw_bytes(raw, ds, tag)
    if little:
        return data
    group, elem = tag >> 16, tag & 0xFFFF
    creator = _creator(ds, group, elem) if group % 2 == 1 and elem > 0x00FF else None
    pr = ds.get("PixelRepresentation", 0)
    ctx = _Context(names, ["iso8859"], 0, pr if isinstance(pr, int) else 0)
    width = WORD_SIZES.get(_vr(raw, ds, names.lookup(tag, creator), ctx), 1)
    if width == 1 or len(data) % width:
        return data
    return np.frombuffer(data, dtype=f">u{width}").astype(f"<u{width}").tobytes()
