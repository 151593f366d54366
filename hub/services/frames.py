"""Frames of a stored instance as WADO-RS sends them (PS3.18 8.7.3.5.3, 10.4.1.1.3).

Native pixel data is sliced straight from the file: the element's value starts after its header at
the offset the index recorded, frame ``n`` (0-based) ``n * frame size`` bytes further (PS3.5 8.1.1,
PS3.5 A.4 for the other case). Encapsulated frames are cut from their fragments as Orthanc does
(:func:`hub.imaging.frames.raw_frame`, PS3.5 A.4) and sent as stored, or decoded to native little endian bytes
when the client wants uncompressed data and a decoder is installed.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from hub.domain.wado import WadoInstance
from hub.errors import HubError

NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
IMPLICIT = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
# Media types of compressed frames (PS3.18 Table 8.7.3-2 / 8.7.3-5).
FRAME_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/x-dicom-rle",
}


@dataclass(frozen=True)
class PixelLayout:
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    frames: int

    @property
    def frame_size(self) -> int:
        return self.rows * self.columns * self.samples * (self.bits_allocated // 8)

    @classmethod
    def of(cls, metadata: dict[str, dict]) -> PixelLayout:
        def num(tag: str, default: int) -> int:
            values = (metadata.get(tag) or {}).get("Value") or [default]
            try:
                return int(values[0])
            except (TypeError, ValueError):
                return default

        return cls(num("00280010", 0), num("00280011", 0), num("00280002", 1), num("00280100", 16),
                   num("00280008", 1))


@dataclass(frozen=True)
class FrameData:
    data: bytes
    transfer_syntax_uid: str  # what ``data`` is encoded in (Explicit VR LE for native little endian bytes)

    @property
    def media_type(self) -> str:
        return FRAME_MEDIA.get(self.transfer_syntax_uid, "application/octet-stream")


def frame_numbers(text: str, count: int) -> list[int]:
    """``1,3,5`` -> [1, 3, 5] (1-based, PS3.18 10.4.1.1.3); 400 for junk, 404 beyond the last frame."""
    try:
        numbers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise HubError("bad_request", "frame numbers are 1-based integers separated by commas") from None
    if not numbers or any(n < 1 for n in numbers):
        raise HubError("bad_request", "frame numbers are 1-based integers separated by commas")
    if any(n > count for n in numbers):
        raise HubError("unknown_resource", f"the instance has {count} frame(s)")
    return numbers


def read_frame(path: Path, inst: WadoInstance, number: int, *, uncompressed: bool) -> FrameData:
    """Frame ``number`` (1-based) of ``inst``: as stored, or native little endian when ``uncompressed``."""
    syntax = inst.transfer_syntax_uid
    layout = PixelLayout.of(json.loads(inst.metadata_json))
    if syntax in NATIVE and syntax != BIG_ENDIAN and inst.pixel_data_offset and layout.bits_allocated % 8 == 0:
        start = inst.pixel_data_offset + (8 if syntax == IMPLICIT else 12) + (number - 1) * layout.frame_size
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(layout.frame_size)
        if len(data) != layout.frame_size:
            raise HubError("unknown_resource", "the pixel data is shorter than its frames")
        return FrameData(data, "1.2.840.10008.1.2.1")
    if syntax not in NATIVE and not uncompressed:
        return FrameData(_encapsulated_frame(path, number), syntax)
    return FrameData(_decoded_frame(path, number, layout.frames), "1.2.840.10008.1.2.1")


def _encapsulated_frame(path: Path, number: int) -> bytes:
    """The fragments of one frame, read from the file without loading the whole pixel data."""
    from hub.dicomfile import read_header
    from hub.imaging.decode import FrameOutOfRange
    from hub.imaging.frames import BadPixelData, raw_frame

    try:
        data, _ = raw_frame(path, read_header(path), number - 1)
    except FrameOutOfRange:
        raise HubError("unknown_resource", "no such frame") from None
    except BadPixelData as exc:
        raise HubError("bad_file_format", str(exc)) from None
    return data


def _decoded_frame(path: Path, number: int, frames: int) -> bytes:
    from pydicom.pixels import pixel_array

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = pixel_array(str(path), index=number - 1 if frames > 1 else None)
    except Exception as exc:  # no decoder for this syntax here
        raise HubError("not_acceptable", f"this frame cannot be decoded here ({type(exc).__name__}); "
                                         "ask for transfer-syntax=*") from None
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
