"""Stored pixel values of one frame, read straight from the file: PS3.5 A.1-A.2 native little endian frames
from their offset, PS3.5 A.4 encapsulated ones decoded frame by frame (RLE, JPEG, JPEG Lossless, JPEG-LS,
JPEG 2000, HTJ2K: see :func:`hub.imaging.decode.decoding_plugin`), anything else by pydicom.

The pixel data's place in a file (:class:`_Layout`) is found by walking the element headers without pydicom
(PS3.5 7.1, 7.5) and kept for the 256 files read last.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset

from hub.dicomfile import (
    DEFLATED,
    EXPLICIT_BE,
    IMPLICIT_LE,
    ITEM,
    ITEM_END,
    LONG_VRS,
    SEQ_END,
    UNDEFINED,
    Header,
    read_header,
)
from hub.imaging.decode import FrameOutOfRange, ImageInfo, Undecodable, decode_frame, decoding_plugin
from hub.imaging.frames import BadPixelData, Span, frame_fragments, pixel_element

__all__ = ["read_frame"]


@dataclass
class _Layout:
    """Where a Part 10 file keeps its pixel data and the Image Pixel attributes (PS3.3 C.7.6.3) it needs."""

    syntax: str
    offset: int  # of the pixel data element's tag
    length: int  # of its value; UNDEFINED when encapsulated
    header: int  # bytes of the element header
    size: int  # of the file
    attrs: dict[str, int | str]
    spans: list[list[Span]] | None = None  # fragments of each frame, when encapsulated

    def get(self, name: str, default: int) -> int:
        try:
            return int(self.attrs.get(name, default))
        except ValueError:
            return default


_ATTRS = {0x00280002: "samples", 0x00280004: "photometric", 0x00280008: "frames", 0x00280010: "rows",
          0x00280011: "columns", 0x00280100: "bits_allocated", 0x00280101: "bits_stored",
          0x00280103: "pixel_representation"}
_LAYOUTS: OrderedDict[tuple[str, int, int], _Layout | None] = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()


class _Window:
    """Reads a file through a 64 KiB window, for walking element headers."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.base, self.buf = f, 0, b""

    def read(self, pos: int, n: int) -> bytes:
        if pos < self.base or pos + n > self.base + len(self.buf):
            self.f.seek(pos)
            self.buf, self.base = self.f.read(max(n, 1 << 16)), pos
            if len(self.buf) < n:
                raise EOFError(pos)
        return self.buf[pos - self.base:pos - self.base + n]

    def element(self, pos: int, implicit: bool) -> tuple[int, bytes, int, int]:
        """(tag, VR, value length, header length) of the element at ``pos`` (PS3.5 7.1)."""
        group, elem, length = struct.unpack("<HHI", self.read(pos, 8))
        tag = group << 16 | elem
        if implicit or group == 0xFFFE:
            return tag, b"", length, 8
        vr = self.read(pos + 4, 2)
        if vr in LONG_VRS:
            return tag, vr, struct.unpack("<I", self.read(pos + 8, 4))[0], 12
        return tag, vr, length >> 16, 8

    def skip(self, pos: int, implicit: bool) -> int:
        """The end of an undefined-length sequence whose items start at ``pos`` (PS3.5 7.5)."""
        while True:
            tag, _, length, _ = self.element(pos, True)
            if tag == SEQ_END:
                return pos + 8
            if tag != ITEM:
                raise ValueError("not an item")
            pos += 8
            if length != UNDEFINED:
                pos += length
                continue
            while (found := self.element(pos, implicit))[0] != ITEM_END:
                _, vr, length, head = found
                pos = pos + head + length if length != UNDEFINED else self.skip(pos + head, implicit or vr == b"UN")
            pos += 8


def _walk(path: Path) -> _Layout | None:
    """Locate the pixel data of a little endian Part 10 file without pydicom; None when it cannot."""
    with open(path, "rb") as f:
        w = _Window(f)
        size = f.seek(0, 2)
        if w.read(128, 4) != b"DICM":
            return None
        pos, syntax = 132, ""
        while (found := w.element(pos, False))[0] >> 16 == 0x0002:
            tag, _, length, head = found
            if tag == 0x00020010:
                syntax = w.read(pos + head, length).rstrip(b"\0 ").decode("ascii", "replace")
            pos += head + length
        if syntax in DEFLATED or syntax == EXPLICIT_BE:
            return None
        implicit, attrs = syntax == IMPLICIT_LE, {}
        while pos < size:
            tag, vr, length, head = w.element(pos, implicit)
            if tag == 0x7FE00010:
                return _Layout(syntax, pos, length, head, size, attrs)
            if tag > 0x7FE00010:
                return None
            if tag in _ATTRS and length != UNDEFINED:
                value = w.read(pos + head, length)
                attrs[_ATTRS[tag]] = (value.rstrip(b"\0 ").decode("ascii", "replace")
                                      if tag in (0x00280004, 0x00280008) else struct.unpack("<H", value[:2])[0])
            pos = pos + head + length if length != UNDEFINED else w.skip(pos + head, implicit or vr == b"UN")
    return None


def _layout(path: Path) -> _Layout | None:
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _LAYOUTS_LOCK:
        if key in _LAYOUTS:
            _LAYOUTS.move_to_end(key)
            return _LAYOUTS[key]
    try:
        layout = _walk(path)
    except (OSError, EOFError, ValueError, struct.error):
        layout = None
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > 256:
            _LAYOUTS.popitem(last=False)
    return layout


def _stored(arr: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep the Bits Stored of each value, sign-extended when Pixel Representation is 1 (PS3.5 8.1.1)."""
    nbits = arr.dtype.itemsize * 8
    if arr.dtype.kind not in "iu" or not 0 < bits_stored < nbits:
        return arr
    arr = arr.view(f"{arr.dtype.byteorder}{'i' if signed else 'u'}{arr.dtype.itemsize}")
    if signed:
        shift = nbits - bits_stored
        return (arr << shift) >> shift
    return arr & ((1 << bits_stored) - 1)


def read_frame(path: Path, frame: int) -> np.ndarray:
    """Stored values (rows, columns) of frame ``frame`` (1-based); raises ``Undecodable`` / ``FrameOutOfRange``."""
    layout = _layout(path)
    if layout is None or layout.get("bits_allocated", 16) not in (8, 16, 32):
        return _decoded(path, frame)
    rows, columns = layout.get("rows", 0), layout.get("columns", 0)
    bits, signed = layout.get("bits_allocated", 16), layout.get("pixel_representation", 0) == 1
    frames = max(layout.get("frames", 1), 1)
    if not 1 <= frame <= frames:
        raise FrameOutOfRange(f"frame {frame} out of range (the instance has {frames})")
    if layout.get("samples", 1) != 1:
        raise Undecodable("colour pixels are not modality values")
    if layout.length == UNDEFINED:
        arr = _encapsulated(path, layout, frame, rows, columns)
    else:
        arr = np.empty((rows, columns), dtype=f"<{'i' if signed else 'u'}{bits // 8}")
        if frame * arr.nbytes > layout.length:
            raise Undecodable("the pixel data is shorter than its frames")
        with open(path, "rb") as f:
            f.seek(layout.offset + layout.header + (frame - 1) * arr.nbytes)
            if f.readinto(memoryview(arr).cast("B")) != arr.nbytes:
                raise Undecodable("the file is shorter than its pixel data")
    return _stored(arr, layout.get("bits_stored", bits), signed)


def _encapsulated(path: Path, layout: _Layout, frame: int, rows: int, columns: int) -> np.ndarray:
    """Decode one frame from its fragments (PS3.5 A.4) with pydicom's decoder for the transfer syntax: Pillow for
    JPEG baseline and JPEG 2000, pylibjpeg (where installed) for JPEG Lossless, JPEG-LS, HTJ2K and 12-bit JPEG."""
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    with open(path, "rb") as f:
        if layout.spans is None:
            header = Header(Dataset(), layout.syntax, layout.size, layout.offset, "OB", "7FE00010")
            items = pixel_element(f, header)
            if items is None:
                raise Undecodable("no encapsulated pixel data")
            try:
                layout.spans = frame_fragments(f, items, max(layout.get("frames", 1), 1))
            except BadPixelData as exc:
                raise Undecodable(str(exc)) from None
        parts = []
        for span in layout.spans[frame - 1]:
            f.seek(span.offset)
            parts.append(f.read(span.length))
    data = b"".join(parts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr, _ = get_decoder(layout.syntax).as_array(
                encapsulate([data]), rows=rows, columns=columns, samples_per_pixel=1, number_of_frames=1,
                bits_allocated=layout.get("bits_allocated", 16), bits_stored=layout.get("bits_stored", 16),
                pixel_representation=layout.get("pixel_representation", 0),
                photometric_interpretation=str(layout.attrs.get("photometric", "MONOCHROME2")),
                decoding_plugin=decoding_plugin(layout.syntax, layout.get("bits_stored", 16), strict=False))
    except Exception as exc:  # noqa: BLE001 - no decoder, or corrupt data
        raise Undecodable(f"cannot decode the frame: {type(exc).__name__}: {exc}") from None
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _decoded(path: Path, frame: int) -> np.ndarray:
    """Anything else (big endian, deflated, 1-bit...): pydicom decodes the frame."""
    header = read_header(path)
    info = ImageInfo.of(header.dataset)
    if info.samples_per_pixel != 1:
        raise Undecodable("colour pixels are not modality values")
    arr = decode_frame(path, header.dataset, frame - 1).pixels
    if arr.ndim != 2:
        raise Undecodable(f"unsupported pixel layout {arr.shape}")
    return _stored(arr, info.bits_stored, info.pixel_representation == 1)
