"""Deterministic synthetic DICOM: CT series with correct geometry (used by tests and bench/)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = "1.2.826.0.1.3680043.10.1419."  # test UID root; deterministic UIDs below it


def uid(*parts: object) -> str:
    return generate_uid(prefix=ROOT, entropy_srcs=[str(p) for p in parts])


def ct_slice(
    index: int,
    *,
    patient_id: str = "SYN001",
    patient_name: str = "SYNTHETIC^CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    rows: int = 512,
    cols: int = 512,
    spacing: float = 0.7,
    thickness: float = 1.25,
    seed: str = "ct",
) -> Dataset:
    """One axial CT slice of a phantom (a water cylinder with a bone rod), HU via rescale."""
    study_uid = study_uid or uid(seed, "study")
    series_uid = series_uid or uid(seed, "series")
    sop_uid = uid(seed, "sop", index)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = ROOT + "1"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20261101"
    ds.SeriesDate = "20261101"
    ds.StudyTime = "101500"
    ds.SeriesTime = "101700"
    ds.AccessionNumber = f"ACC{zlib.crc32(seed.encode()) % 10**8:08d}"
    ds.Modality = "CT"
    ds.Manufacturer = "rishub synthetic"
    ds.ReferringPhysicianName = "REFERRER^ANNA"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "AXIAL 1.25"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{thickness:g}"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = "2"
    ds.InstanceNumber = str(index + 1)
    z = -index * thickness
    ds.ImagePositionPatient = [f"{-cols * spacing / 2:g}", f"{-rows * spacing / 2:g}", f"{z:g}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = uid(seed, "for")
    ds.SliceLocation = f"{z:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [f"{spacing:g}", f"{spacing:g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    yy, xx = np.mgrid[0:rows, 0:cols]
    r2 = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2
    img = np.where(r2 < (min(rows, cols) * 0.45) ** 2, 1024, 0).astype(np.int16)
    rod = (yy - rows / 2) ** 2 + (xx - cols / 3) ** 2 < (rows / 20) ** 2
    img[rod] = 1024 + 700 + index % 50
    ds.PixelData = img.tobytes()
    return ds


def write_series(out_dir: Path, count: int, **kwargs: object) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = out_dir / f"CT{i:05d}.dcm"
        ct_slice(i, **kwargs).save_as(path, enforce_file_format=True)  # type: ignore[arg-type]
        paths.append(path)
    return paths
