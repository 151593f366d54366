"""Volume assembly on real files: the analytic phantom written as a shuffled CT series, Enhanced CT
multi-frame objects (native, RLE, JPEG 2000), pydicom's bundled test files; series that are not volumes."""

from __future__ import annotations

import copy
import io
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from hub.render.assemble import NotAVolume, fill_slice, frame_reader, load, new_volume, plan_volume
from tests.render_phantom import phantom_data, write_phantom_series
from tests.synthetic import uid

SHAPE = (32, 40, 48)  # (nz, ny, nx)
SPACING = (0.8, 0.8, 1.5)  # (sx, sy, sz)
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"  # bundled files only: nothing downloads


def json_meta(ds: Dataset) -> dict:
    """DICOM JSON as the index stores it: bulk data referenced, the pixel data left out."""
    meta = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: f"bulk/{e.tag:08X}")
    meta.pop("7FE00010", None)
    return meta


def metas_of(paths: list[Path]) -> list[dict]:
    return [json_meta(pydicom.dcmread(p, stop_before_pixels=True)) for p in paths]


def assemble(paths: list[Path]) -> tuple:
    plan = plan_volume(metas_of(paths))
    volume = new_volume(plan)
    load(volume, plan, frame_reader(plan, paths))
    return plan, volume


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_phantom_series(tmp_path_factory.mktemp("phantom"), SHAPE, SPACING)


def test_phantom_series_assembles_exactly(phantom: list[Path]) -> None:
    plan, volume = assemble(phantom)
    assert volume.complete and volume.error is None
    assert volume.shape == SHAPE
    assert np.array_equal(volume.data, phantom_data(SHAPE))
    assert volume.spacing == pytest.approx(SPACING)  # from the positions, not the (wrong) SliceThickness
    assert volume.normal == pytest.approx([0, 0, 1])
    assert volume.row_dir == pytest.approx([1, 0, 0]) and volume.col_dir == pytest.approx([0, 1, 0])
    assert volume.origin == pytest.approx([-100, -120, 50])
    assert volume.window == (40, 400) and volume.windows == ((40, 400, ""),) and not volume.monochrome1
    # BitsStored 16 unsigned with intercept -1024 declares up to 64511: int16 all the same, saturating
    assert volume.data.dtype == np.int16 and plan.clip
    # slice k is the file written for z index k (files shuffled, InstanceNumber reversed)
    assert [phantom[i].name[:4] for i in plan.instances] == [f"{k:04d}" for k in range(SHAPE[0])]
    assert list(plan.frames) == [1] * SHAPE[0]


def test_int16_when_every_rescaled_range_fits(phantom: list[Path]) -> None:
    metas = metas_of(phantom)
    for meta in metas:
        meta["00280101"] = {"vr": "US", "Value": [12]}  # 0..4095 - 1024 fits int16
    default = plan_volume(metas)
    assert default.dtype == np.int16 and not default.clip  # fits: nothing to saturate
    plan = plan_volume(metas, saturate=False)
    assert plan.dtype == np.int16 and not plan.clip
    volume = new_volume(plan)
    load(volume, plan, frame_reader(plan, phantom))
    assert volume.data.dtype == np.int16 and np.array_equal(volume.data, phantom_data(SHAPE))


def test_saturate_by_default_keeps_int16_for_wide_declared_ranges(phantom: list[Path]) -> None:
    plan = plan_volume(metas_of(phantom))
    assert plan.dtype == np.int16 and plan.clip
    volume = new_volume(plan)
    load(volume, plan, frame_reader(plan, phantom))
    assert np.array_equal(volume.data, phantom_data(SHAPE))
    stored = np.full(SHAPE[1:], 1024, np.uint16)
    stored[0, :3] = [0, 40000, 65535]  # -1024, 38976 and 64511 HU: the last two saturate
    fill_slice(volume, plan, 0, stored)
    assert volume.data[0, 0, :4].tolist() == [-1024, 32767, 32767, 0]


def test_without_saturate_wide_declared_ranges_give_float32(phantom: list[Path]) -> None:
    plan = plan_volume(metas_of(phantom), saturate=False)
    assert plan.dtype == np.float32 and not plan.clip
    volume = new_volume(plan)
    load(volume, plan, frame_reader(plan, phantom))
    assert np.array_equal(volume.data, phantom_data(SHAPE))
    stored = np.full(SHAPE[1:], 1024, np.uint16)
    stored[0, :3] = [0, 40000, 65535]  # nothing saturates: float32 holds the whole declared range
    fill_slice(volume, plan, 0, stored)
    assert volume.data[0, 0, :4].tolist() == [-1024, 38976, 64511, 0]


def test_normal_from_orientation_decides_the_order(phantom: list[Path]) -> None:
    metas = metas_of(phantom)
    for meta in metas:
        meta["00200037"]["Value"] = [-1, 0, 0, 0, 1, 0]  # row x col = (0, 0, -1): slices run downwards
    plan = plan_volume(metas)
    assert plan.normal == pytest.approx([0, 0, -1])
    assert plan.origin == pytest.approx([-100, -120, 50 + (SHAPE[0] - 1) * 1.5])
    assert [phantom[i].name[:4] for i in plan.instances] == [f"{k:04d}" for k in reversed(range(SHAPE[0]))]
    assert plan.spacing[2] == pytest.approx(1.5)


def _ct_meta(k: int, **changes: object) -> dict:
    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 5, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 16, 12, 0
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
    ds.PixelSpacing = [0.5, 0.5]
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return json_meta(ds)


def test_oblique_stack_and_small_jitter() -> None:
    c, s = np.cos(0.3), np.sin(0.3)
    row, col = np.array([c, s, 0.0]), np.array([0.0, 0.0, -1.0])  # an oblique coronal-ish plane
    normal = np.cross(row, col)
    start = np.array([10.0, -20.0, 30.0])
    metas = [_ct_meta(k, ImageOrientationPatient=[*row, *col], PhotometricInterpretation="MONOCHROME1",
                      ImagePositionPatient=list(start + (3 - k) * 1.25 * normal + [0, 0, 0.001 * (k % 2)]))
             for k in range(4)]
    plan = plan_volume(metas)
    assert plan.normal == pytest.approx(normal)
    assert plan.spacing == pytest.approx([0.5, 0.5, 1.25], abs=1e-3)
    assert list(plan.instances) == [3, 2, 1, 0]
    assert plan.dtype == np.int16 and plan.monochrome1 and plan.window is None


CASES = {
    "single-image": [_ct_meta(0)],
    "mixed-orientation": [_ct_meta(0), _ct_meta(1, ImageOrientationPatient=[1, 0, 0, 0, 0, -1]), _ct_meta(2)],
    "mixed-size": [_ct_meta(0), _ct_meta(1, Rows=8), _ct_meta(2)],
    "missing-geometry": [_ct_meta(0), _ct_meta(1, ImagePositionPatient=None), _ct_meta(2)],
    "gantry-tilt": [_ct_meta(k, ImagePositionPatient=[0.0, 0.3 * k, 2.0 * k]) for k in range(5)],
    "gap": [_ct_meta(k) for k in (0, 1, 2, 4, 5)],
    "duplicate-position": [_ct_meta(0), _ct_meta(1), _ct_meta(1)],
    "mixed-spacing": [_ct_meta(0), _ct_meta(1, PixelSpacing=[0.7, 0.7]), _ct_meta(2)],
    "mixed-frame-of-reference": [_ct_meta(k, FrameOfReferenceUID=f"1.2.3.{k % 2}") for k in range(3)],
    "color": [_ct_meta(k, SamplesPerPixel=3, PhotometricInterpretation="RGB") for k in range(3)],
    "multi-frame-geometry": [_ct_meta(0, NumberOfFrames=10)],
}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_series_that_are_not_volumes(reason: str) -> None:
    with pytest.raises(NotAVolume) as err:
        plan_volume(CASES[reason])
    assert err.value.reason == reason and str(err.value)


def test_per_slice_rescale(phantom: list[Path], tmp_path: Path) -> None:
    """Intercepts differ per slice (int16); a fractional slope makes the volume float32."""
    data = phantom_data(SHAPE)
    for variant, slope in (("intercepts", 1), ("slopes", 0.5)):
        paths = []
        for i, path in enumerate(phantom):
            ds = pydicom.dcmread(path)
            k = int(path.name[:4])
            ds.BitsStored, ds.HighBit = 13, 12
            ds.RescaleSlope, ds.RescaleIntercept = slope, -1024 - 7 * k
            ds.PixelData = ((data[k].astype(np.int32) + 1024 + 7 * k) / slope).astype("<u2").tobytes()
            paths.append(tmp_path / variant / f"{i}.dcm")
            paths[-1].parent.mkdir(exist_ok=True)
            ds.save_as(paths[-1])
        plan, volume = assemble(paths)
        assert volume.data.dtype == (np.int16 if slope == 1 else np.float32)
        assert np.array_equal(volume.data, data), variant
        assert plan.intercepts == pytest.approx([-1024 - 7 * k for k in range(SHAPE[0])])


def write_enhanced(path: Path, data: np.ndarray, spacing: tuple[float, float, float], syntax: str) -> np.ndarray:
    """``data`` as an Enhanced CT object (PS3.3 A.38), frames in shuffled order, a different rescale
    intercept per frame; returns the slice index of each frame."""
    nz, ny, nx = data.shape
    perm = np.random.default_rng(3).permutation(nz)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid("enhanced", syntax)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.Modality, ds.FrameOfReferenceUID = EnhancedCTImageStorage, "CT", uid("enhanced", "for")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("enhanced", "study"), uid("enhanced", syntax, "series")
    ds.NumberOfFrames, ds.Rows, ds.Columns = nz, ny, nx
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [spacing[1], spacing[0]], 9.0
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items, frames = [], []
    for f, k in enumerate(perm):
        position, rescale, voi, item = Dataset(), Dataset(), Dataset(), Dataset()
        position.ImagePositionPatient = [-10.0, -20.0, 5.0 + k * spacing[2]]
        rescale.RescaleIntercept, rescale.RescaleSlope, rescale.RescaleType = -1024 - 3 * f, 1, "HU"
        voi.WindowCenter, voi.WindowWidth, voi.WindowCenterWidthExplanation = [40, 300], [400, 1500], ["SOFT", "BONE"]
        item.PlanePositionSequence = Sequence([position])
        item.PixelValueTransformationSequence = Sequence([rescale])
        item.FrameVOILUTSequence = Sequence([voi])
        items.append(item)
        frames.append((data[k].astype(np.int32) + 1024 + 3 * f).astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.PixelData = np.stack(frames).astype("<u2").tobytes()
    if syntax == "rle":
        ds.compress(RLELossless, encoding_plugin="pydicom")
    elif syntax == "j2k":
        streams = []
        for frame in frames:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, format="JPEG2000", no_jp2=True, irreversible=False)
            streams.append(buf.getvalue())
        ds.PixelData = encapsulate(streams)
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.save_as(path, enforce_file_format=True)
    return perm


@pytest.mark.parametrize("syntax", ["native", "rle", "j2k"])
def test_enhanced_multiframe(tmp_path: Path, syntax: str) -> None:
    shape, spacing = (12, 24, 32), (0.6, 0.6, 2.0)
    data = phantom_data(shape)
    path = tmp_path / "enhanced.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        perm = write_enhanced(path, data, spacing, syntax)
    plan, volume = assemble([path])
    assert list(plan.instances) == [0] * shape[0]
    assert [perm[f - 1] for f in plan.frames] == list(range(shape[0]))  # frame of each slice, 1-based
    assert plan.intercepts == pytest.approx([-1024 - 3 * (f - 1) for f in plan.frames])
    assert volume.data.dtype == np.int16 and np.array_equal(volume.data, data)
    assert volume.spacing == pytest.approx(spacing) and volume.origin == pytest.approx([-10, -20, 5])
    assert volume.windows == ((40, 400, "SOFT"), (300, 1500, "BONE")) and volume.window == (40, 400)


def test_real_multiframe_rt_dose_in_three_syntaxes() -> None:
    """pydicom's RT Dose: 15 frames placed by Grid Frame Offset Vector, Dose Grid Scaling as the slope;
    implicit VR LE (read from the offset), explicit VR big endian (pydicom) and RLE (frame by frame)."""
    ref = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    expected = ref.pixel_array.astype(np.float64) * float(ref.DoseGridScaling)
    for name in ("rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"):
        plan, volume = assemble([TEST_FILES / name])
        assert volume.shape == (15, 10, 10) and volume.data.dtype == np.float32
        assert np.allclose(volume.data, expected, rtol=1e-6), name
        assert volume.spacing == pytest.approx([10, 10, 5])
        assert volume.origin == pytest.approx([189.43125, 199.43125, -761.87])
        assert list(plan.frames) == list(range(1, 16))


def test_fill_slice_checks_the_shape(phantom: list[Path]) -> None:
    plan = plan_volume(metas_of(phantom))
    volume = new_volume(plan)
    assert not volume.ready.any()
    with pytest.raises(ValueError):
        fill_slice(volume, plan, 0, np.zeros((3, 3), np.uint16))
    fill_slice(volume, plan, 3, np.full(SHAPE[1:], 1024, np.uint16))
    assert volume.ready.tolist() == [k == 3 for k in range(SHAPE[0])] and (volume.data[3] == 0).all()


def test_plan_400_metas_is_fast(phantom: list[Path]) -> None:
    base = metas_of(phantom[:1])[0]
    metas = []
    for k in np.random.default_rng(1).permutation(400):
        meta = copy.deepcopy(base)
        meta["00200032"]["Value"] = [-100.0, -120.0, 50.0 + 0.625 * k]
        metas.append(meta)
    best = min(_timed(plan_volume, metas) for _ in range(3))
    assert plan_volume(metas).shape == (400, *SHAPE[1:])
    assert best < 0.05  # typically a few ms


def _timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def test_rt_dose_grid_frame_offsets_in_the_absolute_form_give_the_same_geometry():
    """PS3.3 C.8.8.3.2: offsets relative to the first frame (first element 0) or absolute z values (first
    element equal to the z of ImagePositionPatient) describe the same grid."""
    ds = pydicom.dcmread(TEST_FILES / "rtdose.dcm", stop_before_pixels=True)
    relative = plan_volume([ds.to_json_dict()])
    z0 = float(ds.ImagePositionPatient[2])
    ds.GridFrameOffsetVector = [z0 + float(o) for o in ds.GridFrameOffsetVector]
    absolute = plan_volume([ds.to_json_dict()])
    np.testing.assert_allclose(absolute.origin, relative.origin)
    np.testing.assert_allclose(absolute.spacing, relative.spacing)
    assert relative.origin[2] == pytest.approx(z0)
