"""Window/level (PS3.3 C.11.2.1.2.1 LINEAR) through the int16 table and the float path, presets, defaults,
MONOCHROME1, and JPEG/PNG/WebP encoding read back with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hub.render import window
from tests.render_phantom import phantom_volume

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16).reshape(256, 256)


def linear(x: float, c: float, w: float) -> int:
    """The standard's pseudo-code, one value at a time."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0
    if x > c - 0.5 + (w - 1) / 2:
        return 255
    return int(np.floor(((x - (c - 0.5)) / (w - 1) + 0.5) * 255 + 0.5))


@pytest.mark.parametrize("center,width", [(40, 400), (-600, 1500), (400, 1800), (0.5, 2), (1000, 3), (-3.7, 123.4)])
def test_linear_function_on_every_int16_value(center, width):
    out = window.apply(ALL_INT16, center, width)
    assert out.dtype == np.uint8 and out.shape == ALL_INT16.shape
    for x in (-32768, -1000, center - 0.5 - (width - 1) / 2, center, center + width / 2, 32767):
        xi = int(np.clip(np.ceil(x), -32768, 32767))
        assert out.reshape(-1)[xi + 32768] == linear(xi, center, width), xi
    # the float path gives the same grey levels
    np.testing.assert_array_equal(window.apply(ALL_INT16.astype(np.float32), center, width), out)
    assert np.all(np.diff(out.reshape(-1).astype(int)) >= 0)  # monotonic


def test_known_grey_levels_of_a_soft_tissue_window():
    values = np.array([[-1000, -160, -159, 40, 238, 239, 3000]], np.int16)
    assert window.apply(values, 40, 400).tolist() == [[0, 0, 1, 128, 254, 255, 255]]


def test_width_one_is_a_threshold():
    values = np.array([[-5, 0, 1, 2]], np.int16)
    assert window.apply(values, 1, 1).tolist() == [[0, 0, 255, 255]]
    assert window.apply(values.astype(np.float32), 1, 1).tolist() == [[0, 0, 255, 255]]


def test_monochrome1_inverts():
    plain = window.apply(ALL_INT16, 40, 400)
    np.testing.assert_array_equal(window.apply(ALL_INT16, 40, 400, monochrome1=True), 255 - plain)
    f = ALL_INT16.astype(np.float32)
    np.testing.assert_array_equal(window.apply(f, 40, 400, monochrome1=True), 255 - plain)


def test_table_is_cached_and_read_only():
    window.apply(ALL_INT16[:2], 40, 400)
    lut = window._lut_int16(40.0, 400.0, False)
    assert lut is window._lut_int16(40.0, 400.0, False) and lut.shape == (65536,) and not lut.flags.writeable


def test_strided_and_other_dtypes():
    image = ALL_INT16[::3, ::-2].T  # a non-contiguous view, as the fast path returns
    np.testing.assert_array_equal(window.apply(image, 40, 400), window.apply(np.ascontiguousarray(image), 40, 400))
    np.testing.assert_array_equal(window.apply(np.array([[40, 240]], np.uint16), 40, 400), [[128, 255]])
    np.testing.assert_array_equal(window.apply(np.array([[40.0, 240.0]]), 40, 400), [[128, 255]])


def test_resolve_order_explicit_preset_volume_data():
    vol = phantom_volume((8, 10, 12))  # DICOM default 40/400
    assert window.resolve(vol, 10, 20) == (10.0, 20.0)
    assert window.resolve(vol, preset="lung") == (-600.0, 1500.0)
    assert window.resolve(vol) == (40.0, 400.0)
    vol.window = None
    lo, hi = float(vol.data.min()), float(vol.data.max())
    c, w = window.resolve(vol)
    assert window.apply(np.array([[lo, hi]], np.float32), c, w).tolist() == [[0, 255]]
    assert set(window.PRESETS) == {"lung", "bone", "brain", "abdomen", "mediastinum"}
    assert window.PRESETS["brain"] == (40.0, 80.0) and window.PRESETS["bone"] == (400.0, 1800.0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(center=40), "both"),
    (dict(center=40, width=0.5), "at least 1"),
    (dict(center=float("nan"), width=10), "finite"),
    (dict(preset="liver"), "unknown window preset"),
    (dict(center=40, width=400, preset="lung"), "either"),
])
def test_resolve_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        window.resolve(phantom_volume((4, 4, 4)), **kwargs)


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    y, x = np.mgrid[0:96, 0:128]
    return window.apply(((x * 20 + y * 10) % 1400 - 700).astype(np.int16), 0, 1400)


def test_encode_jpeg(picture):
    data = window.encode(picture, "jpeg", quality=95)
    assert data[:2] == b"\xff\xd8"
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert back.shape == picture.shape and np.abs(back.astype(int) - picture).mean() < 3


def test_encode_png_is_lossless(picture):
    data = window.encode(picture, "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), picture)
    assert len(window.encode(picture, "png", png_level=9)) <= len(data)
    strided = picture[:, ::-1]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(window.encode(strided, "png")))), strided)


def test_encode_webp(picture):
    assert window.WEBP, "Pillow here is expected to have WebP"
    data = window.encode(picture, "webp", quality=90)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    back = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert back.shape == picture.shape and np.abs(back.astype(int) - picture).mean() < 6


@pytest.mark.parametrize("image,fmt,quality,message", [
    (np.zeros((4, 4), np.uint8), "gif", 90, "unknown image format"),
    (np.zeros((4, 4), np.int16), "png", 90, "uint8"),
    (np.zeros((4, 4, 3), np.uint8), "png", 90, "2-D"),
    (np.zeros((4, 4), np.uint8), "jpeg", 0, "quality"),
])
def test_encode_rejects(image, fmt, quality, message):
    with pytest.raises(ValueError, match=message):
        window.encode(image, fmt, quality)
