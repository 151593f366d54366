"""A series as a voxel volume with its patient geometry (DICOM PS3.3 C.7.6.2 Image Plane Module).

Conventions used by every part of :mod:`hub.render`:

* ``data`` has shape ``(nz, ny, nx)``: slice, row, column; index order in vectors is ``(x, y, z)``
  = (column, row, slice).
* ``row_dir`` is the patient direction of increasing column index (first triplet of
  ImageOrientationPatient), ``col_dir`` of increasing row index (second triplet), ``normal`` of
  increasing slice index (slices are sorted so that it equals ``row_dir x col_dir`` projected order).
* ``spacing`` is ``(sx, sy, sz)`` in mm: column spacing (PixelSpacing[1]), row spacing (PixelSpacing[0])
  and the distance between slice centres measured from ImagePositionPatient, never SliceThickness.
* Values are modality values (rescale applied, e.g. HU); ``monochrome1`` asks the display to invert.
* ``ready[k]`` turns true once slice ``k`` is decoded; a volume still loading serves the slices it has.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Volume:
    data: np.ndarray  # (nz, ny, nx), int16 when the modality values fit, else float32
    origin: np.ndarray  # (3,) patient mm of the centre of voxel (0, 0, 0)
    row_dir: np.ndarray  # (3,) unit vector along +x (columns)
    col_dir: np.ndarray  # (3,) unit vector along +y (rows)
    normal: np.ndarray  # (3,) unit vector along +z (slices)
    spacing: np.ndarray  # (3,) mm: (sx, sy, sz)
    monochrome1: bool = False
    window: tuple[float, float] | None = None  # (center, width) from the first slice's VOI LUT module
    windows: tuple[tuple[float, float, str], ...] = ()  # every DICOM preset (center, width, explanation)
    ready: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (nz,) slice decoded
    error: str | None = None  # set when background decoding failed
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    low: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (nz,) each decoded slice's min
    high: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (nz,) and max

    def __post_init__(self) -> None:
        if self.ready.shape != (self.data.shape[0],):
            self.ready = np.ones(self.data.shape[0], dtype=bool)
        if self.low.shape != (self.data.shape[0],):
            complete = self.ready.all()
            self.low = self.data.min(axis=(1, 2)).astype(float) if complete else np.zeros(self.data.shape[0])
            self.high = self.data.max(axis=(1, 2)).astype(float) if complete else np.zeros(self.data.shape[0])

    def value_range(self) -> tuple[float, float] | None:
        """(min, max) of the slices decoded so far, without reading the voxels; None before the first."""
        with self.changed:
            ready = self.ready.copy()
        if not ready.any():
            return None
        return float(self.low[ready].min()), float(self.high[ready].max())

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.data.shape  # type: ignore[return-value]

    @property
    def complete(self) -> bool:
        return bool(self.ready.all())

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def affine(self) -> np.ndarray:
        """4x4 matrix taking (x, y, z, 1) voxel indices to patient mm (PS3.3 C.7.6.2.1.1, extended in z)."""
        m = np.eye(4)
        m[:3, 0] = self.row_dir * self.spacing[0]
        m[:3, 1] = self.col_dir * self.spacing[1]
        m[:3, 2] = self.normal * self.spacing[2]
        m[:3, 3] = self.origin
        return m

    def mark_ready(self, k: int) -> None:
        low, high = float(self.data[k].min()), float(self.data[k].max())
        with self.changed:
            self.low[k], self.high[k] = low, high
            self.ready[k] = True
            self.changed.notify_all()

    def fail(self, reason: str) -> None:
        with self.changed:
            self.error = reason
            self.changed.notify_all()

    def wait_for(self, slices: np.ndarray | slice | int, timeout: float) -> bool:
        """Block until the given slices are decoded (or decoding failed); True when they are."""
        with self.changed:
            return self.changed.wait_for(lambda: self.error is not None or bool(self.ready[slices].all()), timeout)
