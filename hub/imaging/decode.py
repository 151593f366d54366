"""Decode one frame of a stored instance into a numpy image, in the pixel formats Orthanc uses.

Orthanc (``DicomImageDecoder``) turns a frame into ``Grayscale8`` (8 or 1 bits), ``Grayscale16``,
``SignedGrayscale16``, ``Grayscale32``, ``RGB24`` or ``RGB48``; YBR colour is converted to RGB,
PALETTE COLOR through its lookup table (PS3.3 C.7.6.3.1.5), and no rescale or window is applied
here. Decoding is pydicom's: native data, RLE (its own decoder), JPEG baseline and JPEG 2000 (Pillow),
and through pylibjpeg, where installed, what Pillow cannot decode: JPEG Lossless (PS3.5 A.4.1), JPEG-LS
(A.4.3), HTJ2K (10.18), 12-bit JPEG for rendering. What cannot be decoded raises :class:`Undecodable`.
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, RLELossless

from hub.dicomfile import DEFLATED

Format = Literal["Grayscale8", "Grayscale16", "SignedGrayscale16", "Grayscale32", "SignedGrayscale32", "RGB24",
                 "RGB48"]
GRAYSCALE: frozenset[str] = frozenset(
    {"Grayscale8", "Grayscale16", "SignedGrayscale16", "Grayscale32", "SignedGrayscale32"})
COLOR: frozenset[str] = frozenset({"RGB24", "RGB48"})


# The decoder each syntax had before pylibjpeg was installed: the Orthanc image routes are compared with Orthanc
# (DCMTK) pixel for pixel, and pylibjpeg's JPEG baseline / extended output differs from it by 1 here and there.
KEPT_PLUGINS: dict[str, str] = {JPEGBaseline8Bit: "pillow", JPEGExtended12Bit: "pillow", JPEG2000Lossless: "pillow",
                                JPEG2000: "pillow", RLELossless: "pydicom"}
PINNED = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, RLELossless})  # no other decoder, even on failure
_LATER = ("gdcm", "pylibjpeg")  # plugins pydicom would try before Pillow / its RLE decoder


def _keep_plugins_first() -> None:
    """Move pydicom's GDCM and pylibjpeg plugins after the kept one for each syntax of ``KEPT_PLUGINS``, so that
    pydicom's automatic choice (wherever no plugin is passed) is what it was without them; they stay the
    fallback for frames the kept plugin cannot decode. Not thread-safe: done once, on import."""
    for syntax in KEPT_PLUGINS:
        decoder = get_decoder(syntax)
        for label in _LATER:
            try:
                decoder.remove_plugin(label)
            except ValueError:
                continue  # not a plugin of this syntax
            try:
                decoder.add_plugin(label, (f"pydicom.pixels.decoders.{label}", "_decode_frame"))
            except (ImportError, AttributeError):
                pass  # another pydicom layout: the syntax keeps only the plugins it had before


_keep_plugins_first()


_LIBJPEG = importlib.util.find_spec("libjpeg") is not None  # pylibjpeg-libjpeg, optional


def decoding_plugin(syntax: str, bits_stored: int, *, strict: bool = True) -> str:
    """The pydicom decoding plugin for a frame in ``syntax`` ("": pydicom tries its plugins in order).

    JPEG baseline / extended and RLE keep the one decoder they had (``PINNED``). Not ``strict`` (rendering,
    never compared with Orthanc), 12-bit JPEG extended (PS3.5 A.4.1), which Pillow and GDCM cannot decode,
    goes to pylibjpeg when its libjpeg plugin is installed (it is GPL-3.0, so not a dependency of the hub)."""
    if not strict and syntax == JPEGExtended12Bit and bits_stored > 8 and _LIBJPEG:
        return "pylibjpeg"
    return KEPT_PLUGINS[syntax] if syntax in PINNED else ""


class Undecodable(Exception):
    """The frame cannot be decoded here (unsupported layout or no decoder for its syntax)."""


class FrameOutOfRange(Exception):
    """The frame index is not one of the instance's frames."""


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``pixels`` is (rows, columns) for grayscale, (rows, columns, 3) for RGB."""

    pixels: np.ndarray
    format: Format

    @property
    def is_color(self) -> bool:
        return self.format in COLOR


@dataclass(frozen=True)
class ImageInfo:
    """The Image Pixel module attributes decoding and rendering need (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    frames: int

    @classmethod
    def of(cls, ds: Dataset) -> ImageInfo:
        def number(keyword: str, default: int) -> int:
            value = ds.get(keyword, default)
            try:
                return int(value if value not in (None, "") else default)
            except (TypeError, ValueError):
                return default

        return cls(
            rows=number("Rows", 0),
            columns=number("Columns", 0),
            samples_per_pixel=number("SamplesPerPixel", 1),
            bits_allocated=number("BitsAllocated", 8),
            bits_stored=number("BitsStored", number("BitsAllocated", 8)),
            pixel_representation=number("PixelRepresentation", 0),
            photometric=str(ds.get("PhotometricInterpretation", "") or "").strip().upper(),
            frames=number("NumberOfFrames", 1),
        )

    @property
    def frame_size(self) -> int:
        """Bytes of one native frame (bit-packed when 1 bit is allocated; DicomImageInformation)."""
        if self.bits_allocated == 1:
            return (self.rows * self.columns * self.samples_per_pixel + 7) // 8
        return self.rows * self.columns * self.samples_per_pixel * ((self.bits_allocated + 7) // 8)


def decode_frame(path: str | Path, ds: Dataset, index: int) -> Frame:
    """Decode frame ``index`` of the Part 10 file at ``path`` whose header is ``ds``."""
    from pydicom.pixels import pixel_array

    info = ImageInfo.of(ds)
    if index < 0 or index >= max(info.frames, 1):
        raise FrameOutOfRange(f"frame {index} out of range (the instance has {info.frames})")
    if "PixelData" not in ds and info.rows == 0:
        raise Undecodable("the instance has no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source: str | Dataset = str(path)
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            if syntax in DEFLATED:
                source = dcmread(path)  # pixel_array(path) cannot inflate
            arr = pixel_array(source, index=index if info.frames > 1 else None,
                              decoding_plugin=decoding_plugin(syntax, info.bits_stored))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is "cannot decode" (HTTP 415)
        raise Undecodable(f"cannot decode the frame: {type(exc).__name__}: {exc}") from None
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if info.bits_allocated == 1:
        arr = (arr.astype(np.uint8) * 255).astype(np.uint8)  # Orthanc shows 1-bit segments as 0/255
    if info.photometric == "PALETTE COLOR" and info.samples_per_pixel == 1:
        return _palette(arr, ds)
    return _as_frame(np.ascontiguousarray(arr), info)


def _as_frame(arr: np.ndarray, info: ImageInfo) -> Frame:
    if arr.ndim == 3 and arr.shape[2] == 3:
        if arr.dtype == np.uint8:
            return Frame(arr, "RGB24")
        if arr.dtype == np.uint16:
            return Frame(arr, "RGB48")
        raise Undecodable(f"unsupported colour pixels ({arr.dtype})")
    if arr.ndim != 2:
        raise Undecodable(f"unsupported pixel layout {arr.shape}")
    kinds: dict[np.dtype, Format] = {
        np.dtype(np.uint8): "Grayscale8", np.dtype(np.int8): "SignedGrayscale16",
        np.dtype(np.uint16): "Grayscale16", np.dtype(np.int16): "SignedGrayscale16",
        np.dtype(np.uint32): "Grayscale32", np.dtype(np.int32): "SignedGrayscale32",
    }
    fmt = kinds.get(arr.dtype)
    if fmt is None:
        raise Undecodable(f"unsupported pixel type {arr.dtype}")
    if arr.dtype == np.int8:
        arr = arr.astype(np.int16)
    return Frame(arr, fmt)


def _palette(indices: np.ndarray, ds: Dataset) -> Frame:
    """PALETTE COLOR -> RGB24 (8-bit palettes, each 16-bit entry shifted down as Orthanc does)."""
    try:
        descriptor = [int(v) for v in ds.RedPaletteColorLookupTableDescriptor]
        luts = [
            np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, dtype="<u2" if descriptor[2] > 8 else "u1")
            for c in ("Red", "Green", "Blue")
        ]
    except (AttributeError, KeyError, ValueError, TypeError, IndexError):
        raise Undecodable("inconsistent Palette Color Lookup Table") from None
    first, bits = descriptor[1], descriptor[2]
    if bits < 8 or any(len(lut) == 0 for lut in luts):
        raise Undecodable("unsupported Palette Color Lookup Table")
    idx = np.clip(indices.astype(np.int64) - first, 0, len(luts[0]) - 1)
    rgb = np.stack([(lut[idx] >> (bits - 8)).astype(np.uint8) for lut in luts], axis=-1)
    return Frame(np.ascontiguousarray(rgb), "RGB24")
