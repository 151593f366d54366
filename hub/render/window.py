"""Window/level to 8-bit grey and image encoding.

The VOI LUT function is LINEAR (DICOM PS3.3 C.11.2.1.2.1), with output range 0..255::

    x <= c - 0.5 - (w-1)/2  ->  0
    x >  c - 0.5 + (w-1)/2  ->  255
    else                    ->  ((x - (c - 0.5)) / (w-1) + 0.5) * 255

rounded to the nearest grey level. MONOCHROME1 (PS3.3 C.7.6.3.1.2: minimum value is white) is inverted
after windowing. int16 data goes through a cached 65536-entry uint8 table (``np.take``); float data
through a clip and scale.

Presets (centre/width in HU, the usual CT reading windows, e.g. Radiopaedia "Windowing (CT)"):
lung -600/1500, mediastinum 50/350, abdomen (soft tissue) 50/400, bone 400/1800, brain 40/80.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, features

from hub.render.volume import Volume

PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (50.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
FORMATS = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
WEBP = features.check("webp")


def resolve(volume: Volume | None = None, center: float | None = None, width: float | None = None,
            preset: str | None = None) -> tuple[float, float]:
    """The (center, width) to use: explicit values, else a named preset, else the volume's DICOM default
    (PS3.3 C.11.2.1.2 WindowCenter/WindowWidth), else the value range of the decoded slices."""
    if (center is None) != (width is None):
        raise ValueError("give both the window center and width, or neither")
    if center is not None and width is not None:
        if not (np.isfinite(center) and np.isfinite(width)):
            raise ValueError("window center and width must be finite numbers")
        if width < 1:
            raise ValueError(f"window width must be at least 1 (PS3.3 C.11.2.1.2), not {width:g}")
        if preset is not None:
            raise ValueError("give either a window preset or an explicit center/width")
        return float(center), float(width)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown window preset {preset!r}: expected one of {', '.join(PRESETS)}")
        return PRESETS[preset]
    if volume is None:
        raise ValueError("no window given and no volume to take a default from")
    if volume.window is not None and volume.window[1] >= 1:
        return float(volume.window[0]), float(volume.window[1])
    # no usable window (none, or narrower than one value, as PET SUV or dose in Gy): the value range of the
    # slices decoded so far, from the per-slice ranges the loader records (never the undecoded voxels)
    lo, hi = volume.value_range() or (0.0, 1.0)
    return (lo + hi + 1) / 2, max(hi - lo + 1, 1.0)


@lru_cache(maxsize=64)
def _lut_int16(center: float, width: float, invert: bool) -> np.ndarray:
    """65536 uint8 grey levels indexed by the int16 value's bit pattern (value & 0xFFFF)."""
    values = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float64)
    lut = _linear(values, center, width)
    if invert:
        lut = 255 - lut
    lut.setflags(write=False)
    return lut


def _linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 on float64 values, to uint8."""
    if width <= 1:
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


def apply(values: np.ndarray, center: float, width: float, monochrome1: bool = False) -> np.ndarray:
    """Modality values (int16 or float) to a C-contiguous uint8 image."""
    if values.dtype == np.int16:
        return np.take(_lut_int16(float(center), float(width), bool(monochrome1)), values.view(np.uint16))
    if np.issubdtype(values.dtype, np.integer) and values.dtype.itemsize <= 2:
        values = values.astype(np.int32)
    out = _window_float(values, float(center), float(width))
    if monochrome1:
        np.subtract(255, out, out=out)
    return out


def _window_float(values: np.ndarray, center: float, width: float) -> np.ndarray:
    if width <= 1:
        return np.where(values > center - 0.5, 255, 0).astype(np.uint8)
    # y = (x - lo) * scale with lo = c - 0.5 - (w-1)/2, scale = 255/(w-1); +0.5 then truncation rounds
    scale = np.float32(255.0 / (width - 1))
    offset = np.float32(0.5 - (center - 0.5 - (width - 1) / 2) * 255.0 / (width - 1))
    tmp = np.multiply(values, scale, dtype=np.float32)
    tmp += offset
    np.clip(tmp, 0, 255, out=tmp)
    return tmp.astype(np.uint8)


def encode(image: np.ndarray, fmt: str = "jpeg", quality: int = 90, png_level: int = 1) -> bytes:
    """An 8-bit grey image as JPEG, PNG (zlib level ``png_level``: 1 is fast) or WebP (lossy, ``quality``)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError("encode takes a 2-D uint8 image")
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be from 1 to 100, not {quality}")
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = io.BytesIO()
    if fmt == "jpeg":
        pil.save(out, "JPEG", quality=quality)
    elif fmt == "png":
        pil.save(out, "PNG", compress_level=png_level)
    else:
        if not WEBP:
            raise ValueError("this Pillow has no WebP support")
        pil.save(out, "WEBP", quality=quality, method=0)
    return out.getvalue()
