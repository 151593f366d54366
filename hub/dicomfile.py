"""Header-only reading of DICOM Part 10 files (PS3.10 7.1) with a structural check.

The pixel data is never decoded: pydicom parses the header up to (7FE0,0010), and a light
scanner walks the element headers of the whole data set (PS3.5 7.1, 7.5) to prove that every
defined length fits in the file and every undefined length is closed by its delimiter. A file that
is cut anywhere, including inside the pixel data, is rejected.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from hub.errors import HubError

DEFLATED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"}
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}


@dataclass(frozen=True)
class Header:
    dataset: Dataset  # header only: stops before the pixel data
    transfer_syntax_uid: str
    file_size: int
    pixel_data_offset: int | None  # offset of the pixel data element's tag in the file
    pixel_data_vr: str | None
    pixel_data_tag: str | None


# Objects are stored as received; value checks on read would only warn, and a warning that quotes a
# value may carry patient data into the logs.
pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE


class Truncated(Exception):
    pass


def read_header(path: str | Path) -> Header:
    """Parse the header of a Part 10 file; raise ``HubError`` for anything unreadable."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.seek(0, 2)
            size = f.tell()
            f.seek(0)
            f.seek(128)
            if size < 132 or f.read(4) != b"DICM":
                raise HubError("bad_file_format", "not a DICOM Part 10 file (no 'DICM' prefix)")
            f.seek(0)
            ds = dcmread(f, stop_before_pixels=True)
            start = _dataset_start(f)  # also proves the File Meta group is complete
            meta = ds.file_meta
            ts = str(meta.get("TransferSyntaxUID", "") or "").strip()
            if not ts:
                raise HubError(
                    "missing_attribute", "File Meta lacks TransferSyntaxUID (0002,0010)", attribute="TransferSyntaxUID"
                )
            if ts in DEFLATED:
                f.seek(0)
                dcmread(f).get("PixelData")  # inflates and parses the whole data set
                return Header(ds, ts, size, None, None, None)
            # Walk with the encoding pydicom found (it tolerates data sets whose VR encoding
            # contradicts the transfer syntax), so both readings agree.
            is_implicit, is_little = ds.original_encoding
            if is_implicit is None:
                is_implicit, is_little = ts == IMPLICIT_LE, ts != EXPLICIT_BE
            pixel = _scan(f, start, size, implicit=bool(is_implicit), little=bool(is_little))
    except HubError:
        raise
    except Truncated as exc:
        raise HubError("bad_file_format", f"truncated DICOM file: {exc}") from None
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, struct.error, OSError) as exc:
        raise HubError("bad_file_format", f"unreadable DICOM file: {type(exc).__name__}") from None
    offset, vr, tag = pixel
    if offset is not None and vr is None:
        bits = ds.get("BitsAllocated", 16)
        vr = "OW" if (bits or 16) > 8 else "OB"
    return Header(ds, ts, size, offset, vr, f"{tag:08X}" if tag is not None else None)


def _dataset_start(f: BinaryIO) -> int:
    """Offset of the first data set element after the (explicit VR LE) File Meta group."""
    pos = 132
    f.seek(pos)
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise Truncated("inside the File Meta Information")
        group = struct.unpack_from("<H", head, 0)[0]
        if group != 0x0002:
            return pos
        vr = head[4:6]
        if vr in LONG_VRS:
            length = struct.unpack("<I", f.read(4))[0]
            pos += 12 + length
        else:
            length = struct.unpack_from("<H", head, 6)[0]
            pos += 8 + length
        f.seek(pos)


PixelInfo = tuple[int | None, str | None, int | None]


def _scan(f: BinaryIO, start: int, size: int, *, implicit: bool, little: bool) -> PixelInfo:
    """Walk the top-level elements from ``start`` to the end of the file.

    Returns (offset, VR, tag) of the pixel data element, if any.
    """
    e = "<" if little else ">"
    u16, u32 = struct.Struct(e + "H"), struct.Struct(e + "I")
    pixel: PixelInfo = (None, None, None)

    def read_exact(n: int) -> bytes:
        data = f.read(n)
        if len(data) < n:
            raise Truncated(f"at byte {f.tell()}")
        return data

    def element(pos: int, top: bool, implicit: bool = implicit) -> tuple[int, int]:
        """Parse one element header at ``pos``; return (tag, next position)."""
        nonlocal pixel
        f.seek(pos)
        head = read_exact(8)
        tag = (u16.unpack_from(head, 0)[0] << 16) | u16.unpack_from(head, 2)[0]
        if tag in (ITEM, ITEM_END, SEQ_END):
            length = u32.unpack_from(head, 4)[0]
            return tag, pos + 8 + (0 if length == UNDEFINED else length)
        if implicit:
            vr = None
            length = u32.unpack_from(head, 4)[0]
            header_len = 8
        else:
            vr = head[4:6]
            if vr in LONG_VRS:
                length = u32.unpack(read_exact(4))[0]
                header_len = 12
            else:
                length = u16.unpack_from(head, 6)[0]
                header_len = 8
        if top and tag in PIXEL_TAGS:
            pixel = (pos, vr.decode("ascii") if vr else None, tag)
        value_pos = pos + header_len
        if length != UNDEFINED:
            end = value_pos + length
            if end > size:
                raise Truncated(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end of the file")
            return tag, end
        # An undefined-length UN element is a sequence encoded in implicit VR LE (PS3.5 6.2.2).
        return tag, _undefined(value_pos, implicit or vr == b"UN")

    def _undefined(pos: int, implicit: bool) -> int:
        """Items of an undefined-length sequence or encapsulated pixel data, up to the delimiter."""
        while True:
            if pos + 8 > size:
                raise Truncated("sequence not closed by its delimiter")
            f.seek(pos)
            head = read_exact(8)
            tag = (u16.unpack_from(head, 0)[0] << 16) | u16.unpack_from(head, 2)[0]
            length = u32.unpack_from(head, 4)[0]
            if tag == SEQ_END:
                return pos + 8
            if tag != ITEM:
                raise Truncated(f"unexpected tag in a sequence at byte {pos}")
            if length != UNDEFINED:
                pos += 8 + length
                if pos > size:
                    raise Truncated("item runs past the end of the file")
                continue
            pos += 8
            while True:  # undefined-length item: nested elements up to the item delimiter
                tag, pos = element(pos, top=False, implicit=implicit)
                if tag == ITEM_END:
                    break

    pos = start
    while pos < size:
        if size - pos < 8:
            f.seek(pos)
            if f.read(size - pos).strip(b"\x00") == b"":
                break  # trailing zero padding after the data set
            raise Truncated(f"at byte {pos}")
        _, pos = element(pos, top=True)
    return pixel
