"""An analytic phantom for the render tests and bench/render.py: spheres and rods of known values at known
positions in a box of air, as a :class:`hub.render.volume.Volume` or as a DICOM CT series on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from hub.render.volume import Volume
from tests.synthetic import uid

AIR = -1000


@dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]  # voxel (x, y, z)
    radius: float  # voxels (isotropic index space; physical radius = radius * spacing per axis)
    value: int


@dataclass(frozen=True)
class Rod:
    axis: int  # 0: along x, 1: along y, 2: along z
    at: tuple[float, float]  # the two other voxel coordinates, in (x, y, z) order without ``axis``
    radius: float
    value: int


def features(shape: tuple[int, int, int]) -> tuple[list[Sphere], list[Rod]]:
    """Distinct values so that each feature's maximum is known: the brightest sphere sits off-centre."""
    nz, ny, nx = shape
    spheres = [
        Sphere((nx * 0.30, ny * 0.40, nz * 0.50), min(nx, ny, nz) * 0.10, 1500),
        Sphere((nx * 0.70, ny * 0.60, nz * 0.30), min(nx, ny, nz) * 0.08, 800),
        Sphere((nx * 0.55, ny * 0.25, nz * 0.75), min(nx, ny, nz) * 0.06, 300),
    ]
    rods = [
        Rod(0, (ny * 0.80, nz * 0.20), 2.0, 400),  # along x at y=0.8, z=0.2
        Rod(1, (nx * 0.15, nz * 0.80), 2.0, 600),  # along y
        Rod(2, (nx * 0.85, ny * 0.15), 2.0, 1000),  # along z
    ]
    return spheres, rods


def phantom_data(shape: tuple[int, int, int] = (64, 80, 96)) -> np.ndarray:
    """int16 (nz, ny, nx); where features overlap the later one wins."""
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij", sparse=True)
    data = np.full(shape, AIR, dtype=np.int16)
    spheres, rods = features(shape)
    coords = (x, y, z)
    for rod in rods:
        a, b = (c for i, c in enumerate(coords) if i != rod.axis)
        data[np.broadcast_to(((a - rod.at[0]) ** 2 + (b - rod.at[1]) ** 2) <= rod.radius**2, shape)] = rod.value
    for s in spheres:
        data[((x - s.centre[0]) ** 2 + (y - s.centre[1]) ** 2 + (z - s.centre[2]) ** 2) <= s.radius**2] = s.value
    return data


def phantom_volume(shape: tuple[int, int, int] = (64, 80, 96), spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                   origin: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Volume:
    """The phantom in an axial patient frame: +x to patient left, +y posterior, +z superior (LPS)."""
    return Volume(data=phantom_data(shape), origin=np.array(origin, float), row_dir=np.array([1.0, 0, 0]),
                  col_dir=np.array([0, 1.0, 0]), normal=np.array([0, 0, 1.0]), spacing=np.array(spacing, float),
                  window=(40.0, 400.0))


def write_phantom_series(out: Path, shape: tuple[int, int, int] = (64, 80, 96),
                         spacing: tuple[float, float, float] = (0.8, 0.8, 1.5), *, seed: str = "render-phantom",
                         shuffle: bool = True) -> list[Path]:
    """The phantom as an axial CT series (HU = stored - 1024), files written in shuffled order so that
    assembly must sort by geometry; InstanceNumber deliberately reversed."""
    out.mkdir(parents=True, exist_ok=True)
    data = phantom_data(shape)
    nz, ny, nx = shape
    order = np.random.default_rng(7).permutation(nz) if shuffle else np.arange(nz)
    paths = []
    for k in order:
        ds = Dataset()
        sop = uid(seed, "sop", int(k))
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(seed, "study"), uid(seed, "series")
        ds.PatientID, ds.PatientName, ds.Modality = "RENDER1", "PHANTOM^RENDER", "CT"
        ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20261122", 1, int(nz - k)
        ds.FrameOfReferenceUID = uid(seed, "for")
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, 50.0 + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing, column spacing
        ds.SliceThickness = spacing[2] * 2  # wrong on purpose: spacing comes from the geometry
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (data[k].astype(np.int32) + 1024).astype("<u2").tobytes()
        path = out / f"{int(k):04d}-{sop}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
