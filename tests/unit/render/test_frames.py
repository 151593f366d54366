"""Reading one frame's stored values from real files: pydicom's bundled test files in every transfer syntax
(native, implicit, big endian, deflated, RLE, JPEG 2000), Bits Stored masking and sign extension, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from hub.imaging.decode import FrameOutOfRange, Undecodable
from hub.render.frames import read_frame

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # bundled files only: nothing downloads


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_padded.dcm"])
def test_read_frame_decodes_every_syntax(name: str) -> None:
    expected = pydicom.dcmread(TEST_FILES / "MR_small.dcm").pixel_array
    got = read_frame(TEST_FILES / name, 1)
    assert got.shape == (64, 64) and np.array_equal(got, expected)


def test_read_frame_other_files() -> None:
    for name in ("CT_small.dcm", "image_dfl.dcm", "693_J2KI.dcm"):
        ds = pydicom.dcmread(TEST_FILES / name)
        assert np.array_equal(read_frame(TEST_FILES / name, 1), ds.pixel_array), name
    with pytest.raises(FrameOutOfRange):
        read_frame(TEST_FILES / "CT_small.dcm", 2)
    with pytest.raises(Undecodable):  # no JPEG-LS decoder installed here
        read_frame(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm", 1)
    with pytest.raises(Undecodable):
        read_frame(TEST_FILES / "SC_rgb_rle.dcm", 1)


def test_read_frame_keeps_bits_stored(tmp_path: Path) -> None:
    """Bits above Bits Stored are not part of the value; a signed value is sign-extended (PS3.5 8.1.1)."""
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    ds.Rows, ds.Columns, ds.BitsStored, ds.HighBit = 1, 4, 12, 11
    ds.PixelData = ((values.view(np.uint16) & 0x0FFF) | 0xA000).astype("<u2").tobytes()  # junk in bits 12-15
    ds.save_as(tmp_path / "signed12.dcm")
    assert read_frame(tmp_path / "signed12.dcm", 1).tolist() == values.tolist()


def test_assemble_re_exports_read_frame() -> None:
    from hub.render import assemble

    assert assemble.read_frame is read_frame
