"""The pixel operations behind Orthanc's image routes, on decoded frames (float32 arithmetic as
Orthanc's ``ImageProcessing``).

* :func:`preview` (``/preview``): grayscale stretched from its [min, max] to [0, 255], rounded;
  MONOCHROME1 inverted; RGB as is, RGB48 shifted to 8 bits.
* :func:`extract` (``/image-uint8``, ``/image-uint16``, ``/image-int16``): grayscale values
  clamped to the target type; colour refused.
* :func:`render` (``/rendered``): rescale slope/intercept and the window (from the file, else the
  full range of Bits Stored, or the request) to 8 bits, MONOCHROME1 inverted, optional resize
  (nearest neighbour, with a 5x5 Gaussian first when ``smooth`` and shrinking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset

from hub.imaging.decode import GRAYSCALE, Frame, Undecodable

Mode = Literal["preview", "uint8", "uint16", "int16"]


@dataclass(frozen=True)
class Windowing:
    """Rescale and window of one frame (``ParsedDicomFile::GetRescale`` / ``GetDefaultWindowing``)."""

    center: float
    width: float
    slope: float = 1.0
    intercept: float = 0.0


def preview(frame: Frame, *, invert: bool) -> np.ndarray:
    """8-bit image of ``/preview`` (DicomImageDecoder::PreviewDecodedImage)."""
    if frame.format == "RGB24":
        return frame.pixels
    if frame.format == "RGB48":
        return (frame.pixels >> 8).astype(np.uint8)
    if frame.format in ("Grayscale32", "SignedGrayscale32"):
        raise Undecodable("no preview of 32-bit grayscale frames (as Orthanc)")
    pixels = frame.pixels
    low, high = int(pixels.min()), int(pixels.max())
    if low == high:
        out = np.zeros(pixels.shape, dtype=np.uint8)
    else:
        scale = np.float32(255.0 / float(high - low))
        values = (pixels.astype(np.float32) + np.float32(-low)) * scale
        out = np.clip(np.floor(values + np.float32(0.5)), 0, 255).astype(np.uint8)
    return (255 - out).astype(np.uint8) if invert else out


def extract(frame: Frame, mode: Mode) -> np.ndarray:
    """``/image-uint8|uint16|int16``: grayscale values clamped to the type (TruncateDecodedImage);
    colour or 32-bit frames raise :class:`Undecodable` as in Orthanc (HTTP 415)."""
    if frame.format not in GRAYSCALE or frame.format in ("Grayscale32", "SignedGrayscale32"):
        raise Undecodable(f"cannot convert a {frame.format} frame to {mode}")
    bounds = {"uint8": (0, 255, np.uint8), "uint16": (0, 65535, np.uint16), "int16": (-32768, 32767, np.int16)}
    low, high, dtype = bounds[mode]
    return np.clip(frame.pixels.astype(np.int32), low, high).astype(dtype)


def render(frame: Frame, windowing: Windowing, *, invert: bool, width: int = 0, height: int = 0,
           smooth: bool = False, voi: Literal["orthanc", "dicom"] = "orthanc") -> np.ndarray:
    """``/rendered`` (RenderedFrameHandler): 8-bit grayscale or RGB24, resized to fit ``width`` x
    ``height`` (either may be 0) keeping the aspect ratio. ``voi="dicom"`` windows modality values with the
    render service's engine (the LINEAR function of PS3.3 C.11.2.1.2.1, rounded), as DICOMweb asks; the
    default keeps Orthanc 1.10's arithmetic for its own routes."""
    rows, columns = frame.pixels.shape[:2]
    target_w, target_h = _target_size(columns, rows, width, height)
    if frame.is_color:
        image = preview(frame, invert=False)
    elif voi == "dicom":
        from hub.render import window  # the render service's window/level

        values = frame.pixels.astype(np.float32) * np.float32(windowing.slope) + np.float32(windowing.intercept)
        image = window.apply(values, windowing.center, max(windowing.width, 1.0))
    else:
        ww = windowing.width if windowing.width > 1.0 else 1.0
        slope = windowing.slope if abs(windowing.slope) > 0.0001 else 0.0001
        scaling = np.float32(255.0 * slope / ww)
        offset = np.float32((windowing.intercept - windowing.center + ww / 2.0) / slope)
        values = (frame.pixels.astype(np.float32) + offset) * scaling
        image = np.clip(np.floor(values), 0, 255).astype(np.uint8)
    if (target_w, target_h) != (columns, rows):
        if smooth and (target_w < columns or target_h < rows):
            image = smooth_gaussian_5x5(image)
        image = resize_nearest(image, target_w, target_h)
    if invert and not frame.is_color:
        image = (255 - image).astype(np.uint8)
    return image


def _target_size(columns: int, rows: int, width: int, height: int) -> tuple[int, int]:
    if columns == 0 or rows == 0:
        return columns, rows
    ratio = 1.0
    if width and height:
        ratio = min(np.float32(width) / np.float32(columns), np.float32(height) / np.float32(rows))
    elif width:
        ratio = float(np.float32(width) / np.float32(columns))
    elif height:
        ratio = float(np.float32(height) / np.float32(rows))
    return _iround(np.float32(ratio) * np.float32(columns)), _iround(np.float32(ratio) * np.float32(rows))


def _iround(v: float) -> int:
    """boost::math::iround: halves away from zero."""
    return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


def resize_nearest(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """ImageProcessing::Resize: each target pixel takes the source pixel at floor((x + 0.5) * scale)."""
    rows, columns = image.shape[:2]
    if width == 0 or height == 0:
        return np.zeros((height, width) + image.shape[2:], dtype=image.dtype)
    sx, sy = np.float32(columns) / np.float32(width), np.float32(rows) / np.float32(height)
    xs = np.clip(np.floor((np.arange(width, dtype=np.float32) + np.float32(0.5)) * sx).astype(np.int64), 0, columns - 1)
    ys = np.clip(np.floor((np.arange(height, dtype=np.float32) + np.float32(0.5)) * sy).astype(np.int64), 0, rows - 1)
    return np.ascontiguousarray(image[ys][:, xs])


def smooth_gaussian_5x5(image: np.ndarray) -> np.ndarray:
    """Separable [1 4 6 4 1] / 16 kernel, borders repeated, truncated (SmoothGaussian5x5(.., false))."""
    kernel = np.array([1, 4, 6, 4, 1], dtype=np.float32)
    data = image.astype(np.float32)
    for axis in (1, 0):
        pad = [(0, 0)] * data.ndim
        pad[axis] = (2, 2)
        padded = np.pad(data, pad, mode="edge")
        size = data.shape[axis]
        acc = np.zeros_like(data)
        for k, w in enumerate(kernel):
            acc += w * np.take(padded, range(k, k + size), axis=axis)
        data = acc
    return np.clip(np.floor(data / np.float32(256.0)), 0, 255).astype(np.uint8)


def default_windowing(center: float | None, width: float | None, bits_stored: int, slope: float,
                      intercept: float) -> Windowing:
    """The file's first window when it has one, else the full range of Bits Stored."""
    if center is not None and width is not None:
        return Windowing(center, width, slope, intercept)
    bits = bits_stored if bits_stored > 0 else 8
    full = float(1 << (bits & 31))  # Orthanc's "1 << bitsStored" on a 32-bit int: 32 bits give 1
    return Windowing(full / 2.0, full, slope, intercept)


RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"


def frame_windowing(ds: Dataset, frame: int) -> Windowing:
    """Rescale and default window of ``frame``: top-level attributes, else the frame's functional
    groups (PixelValueTransformation / FrameVOILUT); no rescale for RT Dose (Orthanc 1.10)."""
    slope, intercept = 1.0, 0.0
    per_frame = _sequence_item(ds, "PerFrameFunctionalGroupsSequence", frame)
    if str(ds.get("SOPClassUID", "")).strip() != RT_DOSE_STORAGE:
        found = _pair(ds, "RescaleSlope", "RescaleIntercept", first=False)
        if found is None and per_frame is not None:
            found = _pair(_sequence_item(per_frame, "PixelValueTransformationSequence", 0), "RescaleSlope",
                          "RescaleIntercept", first=False)
        if found is not None:
            slope, intercept = found
    window = _pair(ds, "WindowCenter", "WindowWidth", first=True)
    if window is None and per_frame is not None:
        window = _pair(_sequence_item(per_frame, "FrameVOILUTSequence", 0), "WindowCenter", "WindowWidth", first=True)
    center, width = window if window is not None else (None, None)
    bits = ds.get("BitsStored", 0)
    return default_windowing(center, width, int(bits) if isinstance(bits, int) else 0, slope, intercept)


def _sequence_item(ds: Dataset | None, keyword: str, index: int) -> Dataset | None:
    if ds is None:
        return None
    seq = ds.get(keyword)
    if seq is None or not hasattr(seq, "__len__") or index >= len(seq):
        return None
    return seq[index]


def _pair(ds: Dataset | None, a: str, b: str, *, first: bool) -> tuple[float, float] | None:
    """Two DS values; ``first``: the first of several (ParseFirstDouble), else one value only."""
    if ds is None or a not in ds or b not in ds:
        return None
    out = []
    for keyword in (a, b):
        value = ds[keyword].value
        if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
            values = list(value)
            if not values or (len(values) > 1 and not first):
                return None
            value = values[0]
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            return None
    return out[0], out[1]
