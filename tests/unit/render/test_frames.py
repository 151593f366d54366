"""Reading one frame's stored values from real files: pydicom's bundled test files in every transfer syntax
(native, implicit, big endian, deflated, RLE, JPEG-LS, JPEG 2000), a synthetic CT slice encoded by real encoders
(DCMTK's JPEG Lossless, CharLS's JPEG-LS, OpenJPEG's JPEG 2000, OpenJPH's HTJ2K), Bits Stored masking and sign
extension, errors."""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from hub.imaging.decode import FrameOutOfRange, Undecodable
from hub.render.frames import read_frame

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # bundled files only: nothing downloads
DCMCJPEG = Path("/usr/bin/dcmcjpeg")


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_padded.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm"])
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


def ct_frames(*, signed: bool, bits_stored: int, frames: int = 2, size: int = 128) -> np.ndarray:
    """A synthetic CT slice per frame (air, soft tissue, a bone ring, two lungs, noise) in stored values: HU when
    signed, HU + 1024 when not; the first two pixels are the extremes Bits Stored allows."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    hu = np.full((size, size), -1000.0)
    body = (x / 0.45) ** 2 + (y / 0.35) ** 2 < 1
    hu[body] = 40.0
    hu[body & ((x / 0.41) ** 2 + (y / 0.31) ** 2 >= 1)] = 1200.0
    hu[(((x + 0.2) / 0.12) ** 2 + (y / 0.2) ** 2 < 1) | (((x - 0.2) / 0.12) ** 2 + (y / 0.2) ** 2 < 1)] = -850.0
    lo, hi = (-(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1) if signed else (0, (1 << bits_stored) - 1)
    out = np.empty((frames, size, size), dtype=np.int16 if signed else np.uint16)
    for f in range(frames):
        out[f] = np.clip(np.round(hu + rng.normal(0, 12, hu.shape) + 7 * f + (0 if signed else 1024)), lo, hi)
        out[f, 0, :2] = lo, hi
    return out


def ct_file(path: Path, values: np.ndarray, bits_stored: int) -> Dataset:
    """A native CT Image (PS3.3 A.3) holding ``values`` (frames, rows, columns), written to ``path``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "CT", values.shape[1], values.shape[2], values.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(values.dtype.kind == "i")
    ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


CT_KINDS = [(True, 16), (True, 12), (False, 12), (False, 16)]


@pytest.mark.parametrize(("signed", "bits_stored"), CT_KINDS)
@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless])
def test_lossless_ct_encoded_by_pydicom_reads_back_exactly(tmp_path: Path, signed: bool, bits_stored: int,
                                                          syntax: str) -> None:
    """JPEG-LS lossless (PS3.5 A.4.3, CharLS via pyjpegls; decoded by pylibjpeg) and JPEG 2000 lossless (A.4.4,
    OpenJPEG via pylibjpeg-openjpeg; decoded by Pillow) frames equal the native values bit for bit."""
    values = ct_frames(signed=signed, bits_stored=bits_stored)
    ds = ct_file(tmp_path / "native.dcm", values, bits_stored)
    ds.compress(syntax)
    ds.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    for frame in (1, 2):
        got = read_frame(tmp_path / "ct.dcm", frame)
        assert got.dtype == values.dtype and np.array_equal(got, values[frame - 1]), frame


@pytest.mark.parametrize(("signed", "bits_stored"), CT_KINDS)
def test_jpeg_ls_near_lossless_ct(tmp_path: Path, signed: bool, bits_stored: int) -> None:
    """JPEG-LS near-lossless (PS3.5 A.4.3, NEAR = 3): every value within 3 of the original, bar the one extreme
    whose error wraps around the 16-bit range (the codec works modulo 2^16; DCMTK decodes it the same)."""
    values = ct_frames(signed=signed, bits_stored=bits_stored)
    ds = ct_file(tmp_path / "native.dcm", values, bits_stored)
    ds.compress(JPEGLSNearLossless, jls_error=3)
    ds.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    got = read_frame(tmp_path / "ct.dcm", 2)
    error = np.abs(got.astype(np.int64) - values[1])
    assert error.max() <= 3 or (bits_stored == 16 and np.count_nonzero(error > 3) == 1)
    assert np.count_nonzero(error) > 0  # really lossy


@pytest.mark.skipif(not DCMCJPEG.exists() and not os.environ.get("CI"),
                    reason="DCMTK dcmcjpeg not installed (CI installs it)")
@pytest.mark.parametrize(("signed", "bits_stored"), CT_KINDS)
@pytest.mark.parametrize(("flags", "syntax"), [(["+e1"], "1.2.840.10008.1.2.4.70"),
                                               (["+el", "+sv", "6"], "1.2.840.10008.1.2.4.57")])
def test_jpeg_lossless_ct_encoded_by_dcmtk_reads_back_exactly(tmp_path: Path, signed: bool, bits_stored: int,
                                                              flags: list[str], syntax: str) -> None:
    """JPEG Lossless, first-order prediction (SV1, the usual CT syntax) and selection value 6 (PS3.5 A.4.1, process
    14), as DCMTK's dcmcjpeg writes them; decoded by pylibjpeg-libjpeg, exactly the native values."""
    values = ct_frames(signed=signed, bits_stored=bits_stored)
    ct_file(tmp_path / "native.dcm", values, bits_stored)
    subprocess.run([str(DCMCJPEG), *flags, str(tmp_path / "native.dcm"), str(tmp_path / "ct.dcm")], check=True)
    assert pydicom.dcmread(tmp_path / "ct.dcm").file_meta.TransferSyntaxUID == syntax
    for frame in (1, 2):
        got = read_frame(tmp_path / "ct.dcm", frame)
        assert got.dtype == values.dtype and np.array_equal(got, values[frame - 1]), frame


# A 32 x 32 signed 16-bit CT-like image (ramp, a disc at 1500, -32768 and 32767 in the corners) encoded reversibly by
# OpenJPH 0.14 (HTJ2K: CAP marker, HT code-blocks, RPCL, no TLM): no HTJ2K encoder installs here, so it is kept.
HTJ2K_CODESTREAM = base64.b64decode(
    "/0//UQApQAAAAAAgAAAAIAAAAAAAAAAAAAAAIAAAACAAAAAAAAAAAAABjwEB/1AACAACAAAADP9SAAwAAgABAAUEBEAB/1wAEyCQ"
    "mJigmJigmJigmJiYkJCY/2QAFwABT3BlbkpQSCBWZXIgMC4xNC4wLv+QAAoAAAAAAqwAAf+TwAATAO39Aod0AMAACaAABNAAASiU"
    "/QMHdABw+AMHdAD7AMd0AMAACqgAAVUAABVgIpvEcRASAOOUALQwK6ha/QGBtAC/ha5WmsD9AcG0AMAAC3YAAFuwAAFuAMw8gnfj"
    "f00LXgNRjvgA+GNjdmc+KfECLQygYzcAyvwGeYksU03HM8wURMQwFf1cwTTU8AgtEKADNwBpIxz8GUHRopwF/VfInRooUYN/BPoo"
    "XIzAAzcAwAAL0yAABemQAALvgP797xkAEtikrKSYDtSGEErwSzFxqg1GWMMQt5SkkZuICBIGMEs2UAMq0jBKKNVghAGIQAQDKCgD"
    "IsDhADNnAAVkVLFGBgm4EwFKcQH+/e8ZAAZwQ4ll9OJQI5RyYAcUxQpUuKENRSBCGs5QyigUTOjGAMMowUu5dNIIbAMDEEJAQEBA"
    "QMIAAB8uSl8MJPIwAWSCHBmARHMB/30IIAI4QYV+RCGbCNAkUE0BBB6NWMQhDPGMXkQ9wyYRQA4pBAMKmkQgoOAAOC4Mli5yO46i"
    "UkH+EMBS0gHAABewwAAXsUAAC7v+3N9jD16JwiPR9qzdkkjhUkusjAAyJCEpkb2VPk2JjuxjhOyUqLJuJZnbka1yzFpH7JIO23YA"
    "qIJ4v+AcR6enGCMY/qcQ0dMxVOQUnqcOAMYxFi6chQI4ykAflIXSA3gC/tzfU3glYOlPKzGUVzoSI1GSdksg3hISZENSgm9KR2Dt"
    "uEvJkpQkSRPpSIjw6Ghrq6qqagAwBX3T7AkWf3Xv3Xv3XssA4brJAGsMRlBYygRljBfMGKZ8UwEc2YgHMqQBewL/PYVjGUskIylt"
    "LWtZyEKWspQ61tHdTDLJI4+2UhT8fTl+wsFAYU05o/1hQWUCwYzMUCOMpgH5UAd8Af/Z")


def htj2k_source() -> np.ndarray:
    y, x = np.mgrid[0:32, 0:32]
    values = (x * 8 + y * 4 - 1024).astype(np.int16)
    values[(x - 16) ** 2 + (y - 12) ** 2 < 49] = 1500
    values[0, 0], values[31, 31] = -32768, 32767
    return values


@pytest.mark.parametrize("syntax", [HTJ2KLossless, HTJ2KLosslessRPCL])
def test_htj2k_reads_back_exactly(tmp_path: Path, syntax: str) -> None:
    """HTJ2K Lossless and HTJ2K Lossless RPCL (PS3.5 10.18), decoded by pylibjpeg-openjpeg."""
    assert b"\xff\x50" in HTJ2K_CODESTREAM[:64]  # CAP: a Part 15 codestream
    values = htj2k_source()
    ct_file(tmp_path / "native.dcm", values[None], 16)
    ds = pydicom.dcmread(tmp_path / "native.dcm")
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PixelData = encapsulate([HTJ2K_CODESTREAM])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    assert np.array_equal(read_frame(tmp_path / "ct.dcm", 1), values)
    assert np.array_equal(pixel_array(str(tmp_path / "ct.dcm")), values)  # pydicom's own reading agrees


def test_twelve_bit_jpeg_extended_renders_with_pylibjpeg_where_installed() -> None:
    """12-bit JPEG extended (PS3.5 A.4.1, process 4): Pillow and GDCM cannot decode it; pylibjpeg's libjpeg can
    but is GPL-3.0, so it is optional. Without it the frame is reported undecodable (a 422 on /render)."""
    if importlib.util.find_spec("libjpeg") is None:
        with pytest.raises(Undecodable):
            read_frame(TEST_FILES / "JPGExtended.dcm", 1)
        return
    got = read_frame(TEST_FILES / "JPGExtended.dcm", 1)
    expected = pixel_array(str(TEST_FILES / "JPGExtended.dcm"), decoding_plugin="pylibjpeg")
    assert got.shape == (1024, 256) and got.dtype == np.uint16 and np.array_equal(got, expected)
    assert 0 < int(got.max()) < 4096


