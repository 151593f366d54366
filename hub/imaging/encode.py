"""Image files from numpy images (Pillow): PNG (8/16-bit grayscale, RGB), JPEG (8-bit only) and PAM.

Signed 16-bit images are written as Orthanc's PngWriter does: the two's complement bit pattern in a
16-bit grayscale PNG.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from PIL import Image

Encoding = Literal["png", "jpeg", "pam"]
MIME = {"png": "image/png", "jpeg": "image/jpeg", "pam": "image/x-portable-arbitrarymap"}


class NotEncodable(Exception):
    """The image cannot be written in the requested format (e.g. JPEG of 16-bit values)."""


def encode(image: np.ndarray, encoding: Encoding, *, quality: int = 90) -> bytes:
    """Encode ``image`` (uint8 / uint16 / int16 grayscale, or uint8 RGB)."""
    if encoding == "pam":
        return _pam(image)
    if encoding == "jpeg":
        if image.dtype != np.uint8:
            raise NotEncodable("JPEG needs an 8-bit image")
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()
    buf = io.BytesIO()
    _pillow(image).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _pillow(image: np.ndarray) -> Image.Image:
    if image.dtype == np.uint8:
        return Image.fromarray(image)
    if image.ndim == 2 and image.dtype in (np.uint16, np.int16):
        data = np.ascontiguousarray(image).view(np.uint16).astype("<u2")
        return Image.frombytes("I;16", (image.shape[1], image.shape[0]), data.tobytes())
    raise NotEncodable(f"cannot write a PNG of {image.dtype} pixels")


def _pam(image: np.ndarray) -> bytes:
    """Portable Arbitrary Map (netpbm): header then big-endian samples."""
    height, width = image.shape[:2]
    depth = image.shape[2] if image.ndim == 3 else 1
    maxval = 255 if image.dtype == np.uint8 else 65535
    tupltype = "RGB" if depth == 3 else "GRAYSCALE"
    header = f"P7\nWIDTH {width}\nHEIGHT {height}\nDEPTH {depth}\nMAXVAL {maxval}\nTUPLTYPE {tupltype}\nENDHDR\n"
    data = image if image.dtype == np.uint8 else np.ascontiguousarray(image).view(np.uint16).astype(">u2")
    return header.encode("ascii") + np.ascontiguousarray(data).tobytes()
