"""hub.imaging: Orthanc's pixel arithmetic on small known arrays, frame extraction from files written
with pydicom (native, big endian, RLE, encapsulated with and without an offset table), the decoder each
compressed syntax gets (pydicom's bundled files, compared with DCMTK's decoding: Orthanc's), encoders."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from hub.dicomfile import read_header
from hub.imaging import (
    Frame,
    FrameOutOfRange,
    ImageInfo,
    NotEncodable,
    Undecodable,
    Windowing,
    decode_frame,
    default_windowing,
    encode,
    extract,
    preview,
    render,
)
from hub.imaging.decode import decoding_plugin
from hub.imaging.frames import BadPixelData, frame_count, raw_frame
from hub.imaging.process import frame_windowing, resize_nearest, smooth_gaussian_5x5


def write(tmp: Path, name: str, pixels: np.ndarray | None, syntax: str = ExplicitVRLittleEndian,
          **attrs: object) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4"
    if pixels is not None:
        frames = pixels.shape[0] if pixels.ndim == 3 and attrs.get("SamplesPerPixel", 1) == 1 else 1
        ds.Rows, ds.Columns = pixels.shape[-2:] if pixels.ndim == 3 and frames > 1 else pixels.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        if frames > 1:
            ds.NumberOfFrames = frames
        for key, value in attrs.items():
            setattr(ds, key, value)
        big = syntax == ExplicitVRBigEndian
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">" if big else "<")).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    path = tmp / name
    ds.save_as(path, enforce_file_format=True)
    return path


def gray(values: list[list[int]], dtype: type = np.uint16) -> Frame:
    arr = np.array(values, dtype=dtype)
    kinds = {np.uint8: "Grayscale8", np.uint16: "Grayscale16", np.int16: "SignedGrayscale16", np.uint32: "Grayscale32"}
    return Frame(arr, kinds[dtype])  # type: ignore[arg-type]


# ---------------------------------------------------------------- pixel arithmetic
def test_preview_stretches_min_max_and_rounds_halves_up():
    assert preview(gray([[0, 100], [200, 400]]), invert=False).tolist() == [[0, 64], [128, 255]]
    assert preview(gray([[0, 100], [200, 400]]), invert=True).tolist() == [[255, 191], [127, 0]]
    assert preview(gray([[7, 7]]), invert=False).tolist() == [[0, 0]]
    assert preview(gray([[-1000, 1000]], np.int16), invert=False).tolist() == [[0, 255]]
    rgb48 = Frame(np.array([[[65535, 256, 0]]], dtype=np.uint16), "RGB48")
    assert preview(rgb48, invert=True).tolist() == [[[255, 1, 0]]]  # colour is never inverted
    with pytest.raises(Undecodable):
        preview(gray([[1, 2]], np.uint32), invert=False)


def test_extract_clamps_to_the_target_type():
    signed = gray([[-5, 300, 32767]], np.int16)
    assert extract(signed, "uint8").tolist() == [[0, 255, 255]]
    assert extract(signed, "uint16").tolist() == [[0, 300, 32767]]
    assert extract(gray([[40000, 5]]), "int16").tolist() == [[32767, 5]]
    with pytest.raises(Undecodable):
        extract(Frame(np.zeros((1, 1, 3), np.uint8), "RGB24"), "uint8")


def test_render_applies_rescale_then_window_then_inversion():
    ct = gray([[0, 1024, 1164, 4000]], np.int16)
    window = Windowing(center=40, width=400, slope=1, intercept=-1024)
    # floor((x + intercept - center + width / 2) * 255 / width), clamped
    assert render(ct, window, invert=False).tolist() == [[0, 102, 191, 255]]
    assert render(ct, window, invert=True).tolist() == [[255, 153, 64, 0]]
    tiny = render(gray([[0, 1, 2]]), Windowing(center=1, width=0.5), invert=False)
    assert tiny.tolist() == [[0, 127, 255]]  # widths under 1 count as 1


def test_render_resizes_keeping_the_aspect_ratio():
    frame = gray([[0, 100, 200, 300], [400, 500, 600, 700]])
    window = Windowing(center=350, width=700)
    assert render(frame, window, invert=False, width=2).shape == (1, 2)
    assert render(frame, window, invert=False, width=8, height=2).shape == (2, 4)  # the smaller ratio wins
    assert render(Frame(np.zeros((2, 4, 3), np.uint8), "RGB24"), window, invert=False, height=4).shape == (4, 8, 3)


def test_resize_nearest_and_gaussian():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert resize_nearest(image, 2, 2).tolist() == [[5, 7], [13, 15]]  # source floor((x + 0.5) * 2)
    assert resize_nearest(image, 8, 1).shape == (1, 8)
    flat = np.full((5, 5), 200, np.uint8)
    assert (smooth_gaussian_5x5(flat) == 199).all() or (smooth_gaussian_5x5(flat) == 200).all()
    impulse = np.zeros((5, 5), np.uint8)
    impulse[2, 2] = 255
    assert smooth_gaussian_5x5(impulse)[2, 2] == int(255 * 36 / 256)


def test_default_window_is_the_full_range_of_bits_stored():
    assert default_windowing(None, None, 12, 1, 0) == Windowing(2048.0, 4096.0, 1, 0)
    assert default_windowing(None, None, 32, 1, 0).width == 1.0  # Orthanc's "1 << 32" on an int
    assert default_windowing(50, 350, 16, 2, -10) == Windowing(50, 350, 2, -10)


def test_frame_windowing_from_attributes_and_functional_groups():
    ds = Dataset()
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 2000]
    ds.RescaleSlope, ds.RescaleIntercept, ds.BitsStored = 2, -1024, 12
    assert frame_windowing(ds, 0) == Windowing(40, 400, 2, -1024)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.2"  # RT Dose: no rescale
    assert frame_windowing(ds, 0) == Windowing(40, 400, 1, 0)
    mf = Dataset()
    mf.BitsStored = 16
    group, transform, voi = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = 3, 5
    voi.WindowCenter, voi.WindowWidth = 10, 20
    group.PixelValueTransformationSequence, group.FrameVOILUTSequence = [transform], [voi]
    mf.PerFrameFunctionalGroupsSequence = [Dataset(), group]
    assert frame_windowing(mf, 1) == Windowing(10, 20, 3, 5)
    assert frame_windowing(mf, 0) == Windowing(32768.0, 65536.0, 1, 0)


# ---------------------------------------------------------------- files
def test_decode_native_multiframe_and_errors(tmp_path):
    cube = np.arange(3 * 2 * 4, dtype=np.int16).reshape(3, 2, 4) - 5
    path = write(tmp_path, "mf.dcm", cube)
    ds = read_header(path).dataset
    frame = decode_frame(path, ds, 1)
    assert frame.format == "SignedGrayscale16" and frame.pixels.tolist() == cube[1].tolist()
    with pytest.raises(FrameOutOfRange):
        decode_frame(path, ds, 3)
    empty = write(tmp_path, "empty.dcm", None)
    with pytest.raises(Undecodable):
        decode_frame(empty, read_header(empty).dataset, 0)


def test_decode_big_endian_rle_palette_and_one_bit(tmp_path):
    values = np.array([[1, 2, 300], [4, 5, 65000]], dtype=np.uint16)
    big = write(tmp_path, "be.dcm", values, ExplicitVRBigEndian)
    assert decode_frame(big, read_header(big).dataset, 0).pixels.tolist() == values.tolist()
    from pydicom import dcmread

    ds = dcmread(write(tmp_path, "native.dcm", values))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    ds.save_as(tmp_path / "rle.dcm")
    assert decode_frame(tmp_path / "rle.dcm", read_header(tmp_path / "rle.dcm").dataset, 0).pixels.tolist() == \
        values.tolist()
    lut = np.array([0, 0x1000, 0xFF00], dtype="<u2").tobytes()
    palette = write(tmp_path, "pal.dcm", np.array([[0, 1, 2]], dtype=np.uint8),
                    PhotometricInterpretation="PALETTE COLOR", RedPaletteColorLookupTableDescriptor=[3, 0, 16],
                    GreenPaletteColorLookupTableDescriptor=[3, 0, 16], BluePaletteColorLookupTableDescriptor=[3, 0, 16],
                    RedPaletteColorLookupTableData=lut,
                    GreenPaletteColorLookupTableData=lut, BluePaletteColorLookupTableData=lut)
    rgb = decode_frame(palette, read_header(palette).dataset, 0)
    assert rgb.format == "RGB24" and rgb.pixels[0, :, 0].tolist() == [0, 0x10, 0xFF]
    bits = write(tmp_path, "seg.dcm", None)
    seg = Dataset()
    seg.file_meta = read_header(bits).dataset.file_meta
    seg.SOPClassUID, seg.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.3.5"
    seg.Rows, seg.Columns, seg.SamplesPerPixel, seg.PhotometricInterpretation = 1, 8, 1, "MONOCHROME2"
    seg.BitsAllocated = seg.BitsStored = 1
    seg.HighBit = seg.PixelRepresentation = 0
    seg.PixelData = bytes([0b10100001])
    seg.save_as(bits, enforce_file_format=True)
    assert decode_frame(bits, read_header(bits).dataset, 0).pixels.tolist() == [[255, 0, 0, 0, 0, 255, 0, 255]]
    assert ImageInfo.of(read_header(bits).dataset).frame_size == 1


def test_raw_frames_native_and_big_endian(tmp_path):
    cube = np.arange(2 * 2 * 3, dtype=np.uint16).reshape(2, 2, 3) + 0x0100
    path = write(tmp_path, "mf.dcm", cube)
    data, mime = raw_frame(path, read_header(path), 1)
    assert data == cube[1].astype("<u2").tobytes() and mime == "application/octet-stream"
    big = write(tmp_path, "be.dcm", cube, ExplicitVRBigEndian)
    assert raw_frame(big, read_header(big), 1)[0] == cube[1].astype("<u2").tobytes()  # host order, as DCMTK
    with pytest.raises(FrameOutOfRange):
        raw_frame(path, read_header(path), 2)
    none = write(tmp_path, "none.dcm", None)
    with pytest.raises(BadPixelData):
        raw_frame(none, read_header(none), 0)


def encapsulated(tmp: Path, name: str, frames: list[bytes], **kwargs: object) -> Path:
    path = write(tmp, name, None, JPEGBaseline8Bit)
    from pydicom import dcmread

    ds = dcmread(path)
    ds.Rows = ds.Columns = 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, "MONOCHROME2", \
        8, 8, 7
    ds.PixelRepresentation, ds.NumberOfFrames = 0, len(frames)
    ds.PixelData = encapsulate(frames, **kwargs)  # type: ignore[arg-type]
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    return path


def test_raw_frames_encapsulated(tmp_path):
    one = encapsulated(tmp_path, "one.dcm", [b"\xff\xd8AAAA", b"\xff\xd8BB"])
    assert raw_frame(one, read_header(one), 1) == (b"\xff\xd8BB", "image/jpeg")
    split = encapsulated(tmp_path, "split.dcm", [b"\xff\xd8AAAAAA", b"\xff\xd8BBBBBB"], fragments_per_frame=2,
                         has_bot=True)
    assert raw_frame(split, read_header(split), 0)[0] == b"\xff\xd8AAAAAA"
    assert raw_frame(split, read_header(split), 1)[0] == b"\xff\xd8BBBBBB"
    nobot = encapsulated(tmp_path, "nobot.dcm", [b"\xff\xd8AAAAAA"], fragments_per_frame=2, has_bot=False)
    assert raw_frame(nobot, read_header(nobot), 0)[0] == b"\xff\xd8AAAAAA"
    bad = encapsulated(tmp_path, "bad.dcm", [b"\xff\xd8AAAAAA", b"\xff\xd8BBBBBB"], fragments_per_frame=2,
                       has_bot=False)
    with pytest.raises(BadPixelData):
        raw_frame(bad, read_header(bad), 0)


def test_frame_count_as_orthanc_reads_it():
    ds = Dataset()
    assert frame_count(ds, ExplicitVRLittleEndian) == 1
    ds.NumberOfFrames = "3 "
    assert frame_count(ds, ExplicitVRLittleEndian) == 3
    assert frame_count(ds, "1.2.840.10008.1.2.4.100") == 1  # video: one frame
    ds[0x00280008] = RawDataElement(Tag(0x00280008), "IS", 2, b"1A", 0, False, True)
    with pytest.raises(BadPixelData):
        frame_count(ds, ExplicitVRLittleEndian)


# ---------------------------------------------------------------- decoders per transfer syntax
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # pydicom's bundled files: nothing downloads
DCMDJPEG, DCMDJPLS = Path("/usr/bin/dcmdjpeg"), Path("/usr/bin/dcmdjpls")
BASELINE = ["SC_rgb_jpeg_dcmtk.dcm", "SC_jpeg_no_color_transform.dcm", "SC_rgb_dcmtk_+eb+cr.dcm",
            "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_jpeg_lossy_gdcm.dcm", "examples_ybr_color.dcm"]


def decoded(name: str, index: int = 0) -> Frame:
    path = TEST_FILES / name
    return decode_frame(path, read_header(path).dataset, index)


def test_decoding_plugin_keeps_the_decoders_of_before():
    assert decoding_plugin(JPEGBaseline8Bit, 8) == decoding_plugin(JPEGExtended12Bit, 12) == "pillow"
    with_libjpeg = importlib.util.find_spec("libjpeg") is not None  # optional (GPL-3.0)
    assert decoding_plugin(JPEGExtended12Bit, 12, strict=False) == ("pylibjpeg" if with_libjpeg else "pillow")
    assert decoding_plugin(JPEGExtended12Bit, 8, strict=False) == "pillow"
    assert decoding_plugin(RLELossless, 16) == "pydicom"
    for syntax in (JPEG2000Lossless, JPEG2000, JPEGLosslessSV1, JPEGLSLossless, ExplicitVRLittleEndian):
        assert decoding_plugin(syntax, 16) == ""  # pydicom's order: Pillow first for JPEG 2000


def test_jpeg_baseline_and_jpeg_2000_stay_with_pillow():
    """The pixels the image routes were checked against Orthanc with: Pillow's, and pydicom's own choice is
    Pillow again with the other plugins installed (pylibjpeg's libjpeg, where installed, decodes these
    baseline files differently)."""
    for name in BASELINE:
        path, index = str(TEST_FILES / name), 0 if name == "examples_ybr_color.dcm" else None
        pillow = pixel_array(path, index=index, decoding_plugin="pillow")
        assert np.array_equal(decoded(name).pixels, pillow), name
        assert np.array_equal(pixel_array(path, index=index), pillow), name
    for name in ("MR_small_jp2klossless.dcm", "JPEG2000.dcm", "693_J2KI.dcm"):
        assert np.array_equal(decoded(name).pixels, pixel_array(str(TEST_FILES / name), decoding_plugin="pillow"))
    with pytest.raises(Undecodable):  # 12-bit: Pillow cannot, pylibjpeg would differ from Orthanc's DCMTK by 1
        decoded("JPGExtended.dcm")


@pytest.mark.parametrize(("name", "fmt", "tool"), [
    ("SC_rgb_jpeg_gdcm.dcm", "RGB24", DCMDJPEG),  # JPEG Lossless SV1 (PS3.5 A.4.1)
    ("MR_small_jpeg_ls_lossless.dcm", "SignedGrayscale16", DCMDJPLS),  # JPEG-LS (A.4.3)
    ("JPEGLSNearLossless_08.dcm", "Grayscale8", DCMDJPLS),
    ("JPEGLSNearLossless_16.dcm", "Grayscale16", DCMDJPLS),
    ("SC_rgb_jls_lossy_line.dcm", "RGB24", DCMDJPLS),
    ("SC_rgb_jls_lossy_sample.dcm", "RGB24", DCMDJPLS)])
def test_lossless_and_jpeg_ls_decode_as_orthanc(tmp_path, name, fmt, tool):
    """Syntaxes without a decoder before pylibjpeg: the same values as DCMTK's decoders (Orthanc's) give."""
    frame = decoded(name)
    assert frame.format == fmt
    if name == "MR_small_jpeg_ls_lossless.dcm":
        assert np.array_equal(frame.pixels, dcmread(TEST_FILES / "MR_small.dcm").pixel_array)
    if not tool.exists():
        if os.environ.get("CI"):
            pytest.fail(f"DCMTK {tool.name} missing: .ci/run installs dcmtk")
        pytest.skip(f"DCMTK {tool.name} not installed")
    subprocess.run([str(tool), str(TEST_FILES / name), str(tmp_path / "out.dcm")], check=True, capture_output=True)
    assert np.array_equal(frame.pixels, dcmread(tmp_path / "out.dcm").pixel_array)


def test_transcode_decodes_as_before_and_the_new_syntaxes():
    from hub.services.transcode import transcode_dataset

    ds = dcmread(TEST_FILES / "SC_jpeg_no_color_transform.dcm")
    transcode_dataset(ds, ExplicitVRLittleEndian)
    expected = pixel_array(str(TEST_FILES / "SC_jpeg_no_color_transform.dcm"), decoding_plugin="pillow")
    assert ds.PixelData == expected.tobytes()
    ds = dcmread(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm")
    transcode_dataset(ds, ExplicitVRLittleEndian)
    assert ds.PixelData == dcmread(TEST_FILES / "MR_small.dcm").PixelData
    with pytest.raises(RuntimeError):
        transcode_dataset(dcmread(TEST_FILES / "JPGExtended.dcm"), ExplicitVRLittleEndian)


# ---------------------------------------------------------------- encoders
def test_encoders():
    signed = np.array([[-1, 2]], dtype=np.int16)
    png = Image.open(io.BytesIO(encode(signed, "png")))
    assert np.array(png).astype(np.uint16).view(np.int16).tolist() == [[-1, 2]]  # two's complement bit pattern
    rgb = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert np.array(Image.open(io.BytesIO(encode(rgb, "png")))).tolist() == [[[1, 2, 3]]]
    assert Image.open(io.BytesIO(encode(np.zeros((4, 4), np.uint8), "jpeg", quality=50))).format == "JPEG"
    with pytest.raises(NotEncodable):
        encode(np.zeros((2, 2), np.uint16), "jpeg")
    pam = encode(np.array([[1, 258]], dtype=np.uint16), "pam")
    assert pam.startswith(b"P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n")
    assert pam.endswith(b"\x00\x01\x01\x02")
