"""Frames as stored, read from the Part 10 file without decoding (Orthanc's ``DicomFrameIndex``).

* Native pixel data: frame ``n`` is bytes ``[n * size, (n + 1) * size)`` of the value, in the host
  (little-endian) order DCMTK loads it in: a big-endian OW value has its 16-bit words swapped.
* Encapsulated pixel data (PS3.5 A.4): the items after the Basic Offset Table; one fragment per
  frame when the counts agree, else the fragments grouped by the offset table.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from hub.dicomfile import DEFLATED, EXPLICIT_BE, IMPLICIT_LE, Header
from hub.imaging.decode import FrameOutOfRange, ImageInfo

NATIVE = {IMPLICIT_LE, "1.2.840.10008.1.2.1", EXPLICIT_BE} | DEFLATED
VIDEO_PREFIXES = ("1.2.840.10008.1.2.4.10", "1.2.840.10008.1.2.4.20")  # MPEG-2, MPEG-4, HEVC
RAW_MIME = {"1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.90": "image/jp2",
            "1.2.840.10008.1.2.4.91": "image/jp2"}
SWAP = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
ITEM, SEQ_END = 0xFFFEE000, 0xFFFEE0DD
CHUNK = 1 << 20


class BadPixelData(Exception):
    """The pixel data does not hold the frames its attributes announce."""


@dataclass(frozen=True)
class Span:
    offset: int
    length: int


def frame_count(ds: Dataset, transfer_syntax: str) -> int:
    """Number of Frames (0028,0008) as Orthanc reads it: 1 when absent, and 1 for video syntaxes."""
    if transfer_syntax.startswith(VIDEO_PREFIXES):
        return 1
    if "NumberOfFrames" not in ds:
        return 1
    raw = ds.get_item(0x00280008)
    try:
        value = raw.value if isinstance(raw, RawDataElement) else ds["NumberOfFrames"].value
    except ValueError:
        raise BadPixelData("invalid Number of Frames") from None
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value if value is not None else "")
    text = text.rstrip(" \0")
    if not re.fullmatch(r"[+-]?\d+", text) or int(text) < 0:
        raise BadPixelData(f"invalid Number of Frames: {text!r}")
    return int(text)


def raw_frame(path: str | Path, header: Header, index: int) -> tuple[bytes, str]:
    """(bytes of frame ``index`` as stored, its MIME type)."""
    ts = header.transfer_syntax_uid
    count = frame_count(header.dataset, ts)
    if index < 0 or index >= count:
        raise FrameOutOfRange(f"frame {index} out of range (the instance has {count})")
    mime = RAW_MIME.get(ts, "application/octet-stream")
    if ts in DEFLATED:
        full = dcmread(path)
        if "PixelData" not in full:
            raise BadPixelData("Cannot access a raw frame")
        return _slice(full.PixelData, header.dataset, index, count, vr="OB", little=True), mime
    if header.pixel_data_offset is None:
        raise BadPixelData("Cannot access a raw frame")
    with open(path, "rb") as f:
        element = pixel_element(f, header)
        if element is None:  # native
            value = value_span(f, header)
            info = ImageInfo.of(header.dataset)
            size = info.frame_size
            if value.length < size * count:
                raise BadPixelData("the pixel data is shorter than its frames")
            vr = header.pixel_data_vr or "OB"
            width = 1 if ts != EXPLICIT_BE else SWAP.get(vr, 1)
            start = index * size - (index * size) % width  # swap whole words, as DCMTK swaps the value
            f.seek(value.offset + start)
            data = _host_order(f.read(-(-(index * size + size - start) // width) * width), vr, width == 1)
            skip = index * size - start
            return data[skip:skip + size], mime
        spans = frame_fragments(f, element, count)[index]
        return b"".join(_read(f, s) for s in spans), mime


def pixel_element(f: BinaryIO, header: Header) -> list[Span] | None:
    """The items of encapsulated pixel data (the Basic Offset Table first); None when native."""
    if header.pixel_data_offset is None or header.transfer_syntax_uid in NATIVE:
        return None
    f.seek(header.pixel_data_offset + 8)
    length = struct.unpack("<I", f.read(4))[0]
    if length != 0xFFFFFFFF:
        return None
    items: list[Span] = []
    pos = header.pixel_data_offset + 12
    while pos + 8 <= header.file_size:
        f.seek(pos)
        tag_group, tag_elem, item_len = struct.unpack("<HHI", f.read(8))
        tag = (tag_group << 16) | tag_elem
        if tag == SEQ_END:
            break
        if tag != ITEM:
            raise BadPixelData("unexpected element in the encapsulated pixel data")
        items.append(Span(pos + 8, item_len))
        pos += 8 + item_len
    return items


def value_span(f: BinaryIO, header: Header) -> Span:
    """Where the value of native pixel data lies (explicit: 12-byte header for OB/OW, implicit: 8)."""
    assert header.pixel_data_offset is not None
    little = header.transfer_syntax_uid != EXPLICIT_BE
    f.seek(header.pixel_data_offset)
    head = f.read(12)
    implicit = header.transfer_syntax_uid == IMPLICIT_LE or head[4:6] not in (b"OB", b"OW", b"OF", b"OD", b"OL",
                                                                             b"OV", b"UN")
    if implicit:
        length = struct.unpack("<I" if little else ">I", head[4:8])[0]
        return Span(header.pixel_data_offset + 8, length)
    return Span(header.pixel_data_offset + 12, struct.unpack("<I" if little else ">I", head[8:12])[0])


def frame_fragments(f: BinaryIO, items: list[Span], count: int) -> list[list[Span]]:
    """Fragments of each frame (DicomFrameIndex::FragmentIndex): one per frame when the counts
    agree, else grouped by the Basic Offset Table (an empty table means one frame)."""
    if len(items) < count + 1:
        raise BadPixelData("fewer fragments than frames")
    fragments = items[1:]
    if len(fragments) == count:
        return [[frag] for frag in fragments]
    bot = items[0]
    if bot.length % 4:
        raise BadPixelData("bad Basic Offset Table")
    table = list(struct.unpack(f"<{bot.length // 4}I", _read(f, bot))) if bot.length else [0]
    if len(table) != count or table[0] != 0:
        raise BadPixelData("the Basic Offset Table does not match the Number of Frames")
    out: list[list[Span]] = [[] for _ in range(count)]
    frame, offset = 0, 0
    for frag in fragments:
        if frame + 1 < count and offset == table[frame + 1]:
            frame += 1
        out[frame].append(frag)
        offset += frag.length + 8
    if frame + 1 != count:
        raise BadPixelData("the Basic Offset Table does not match the fragments")
    return out


def _read(f: BinaryIO, span: Span) -> bytes:
    f.seek(span.offset)
    return f.read(span.length)


def iter_span(f: BinaryIO, span: Span) -> Iterator[bytes]:
    """Stream a span of the file in 1 MiB chunks."""
    f.seek(span.offset)
    left = span.length
    while left > 0:
        chunk = f.read(min(CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        yield chunk


def _slice(value: bytes, ds: Dataset, index: int, count: int, *, vr: str, little: bool) -> bytes:
    size = ImageInfo.of(ds).frame_size
    if len(value) < size * count:
        raise BadPixelData("the pixel data is shorter than its frames")
    return _host_order(value[index * size:(index + 1) * size], vr, little)


def _host_order(data: bytes, vr: str, little: bool) -> bytes:
    """Swap the words of a big-endian value as DCMTK does when it loads it (by VR word size)."""
    width = SWAP.get(vr, 1)
    if little or width == 1 or len(data) % width:
        return data
    return np.frombuffer(data, dtype=f">u{width}").astype(f"<u{width}").tobytes()
