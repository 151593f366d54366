"""Reporting views as planes: a request (axial/coronal/sagittal/oblique slice or slab, or a full-volume
projection at any angle) becomes a :class:`hub.render.plane.Plane` in voxel coordinates plus the four
orientation labels of the image edges.

Views are defined in patient coordinates (LPS: +x patient left, +y posterior, +z head; DICOM PS3.3
C.7.6.2.1.1) and converted to voxel coordinates through the volume's affine, so they are right for any
acquisition orientation. Display follows the radiological convention:

* axial: patient right on image left, anterior at the top (viewed from the feet);
* coronal: patient right on image left, head at the top (viewed from the front);
* sagittal: anterior on image left, head at the top (viewed from the patient's left).

Edge labels use the letters of PS3.3 C.7.6.1.1.1 (Patient Orientation): L/R, A/P, H/F; an oblique edge gets
its dominant letters, largest component first ("RA"). The output keeps the physical aspect ratio (square
pixels in mm) and its field of view covers the volume's extent in the plane. Invalid requests raise
:class:`ValueError` (an HTTP 400 at the REST layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hub.render.plane import Plane
from hub.render.volume import Volume

VIEWS = ("axial", "coronal", "sagittal", "oblique", "projection")
MODES = ("mip", "minip", "avg")
INTERPOLATIONS = ("linear", "nearest")
MAX_SIZE = 4096  # output pixels per side
LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))  # +x/-x, +y/-y, +z/-z in LPS
LABEL_MIN = 0.25  # a direction component gets its letter from this cosine on (about 14.5 degrees)
X, Y, Z = np.eye(3)
# (u: toward image right, v: toward image bottom); the viewing direction is u x v
STANDARD = {"axial": (X, Y), "coronal": (X, -Z), "sagittal": (Y, -Z)}
AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # the patient axis that ``position`` is measured on


@dataclass(frozen=True)
class ViewRequest:
    """What a reader asks for. ``thickness`` in mm: 0 for a thin MPR, ``math.inf`` for the whole volume
    (a projection is always the whole volume). Angles in degrees. ``width``/``height`` are upper limits."""

    view: str = "axial"
    position: float | None = None  # axial/coronal/sagittal: patient mm along z/y/x; default the centre voxel
    point: Sequence[float] | None = None  # oblique: a patient point (mm) on the plane; default the centre voxel
    normal: Sequence[float] | None = None  # oblique: the plane normal in patient coordinates
    angles: Sequence[float] | None = None  # oblique: rotations about patient x, y, z applied to the axial plane
    up: Sequence[float] | None = None  # oblique: the patient direction toward the top of the image
    azimuth: float = 0.0  # projection: about the patient's head axis, 0 = seen from the front, 90 = from the left
    elevation: float = 0.0  # projection: positive = seen from above the head end
    thickness: float = 0.0
    mode: str = "mip"
    width: int = 512
    height: int = 512
    interpolation: str = "linear"


class Labels(NamedTuple):
    left: str
    right: str
    top: str
    bottom: str


@dataclass(frozen=True)
class View:
    """A planned view: the plane to render, its labels and its patient geometry."""

    plane: Plane
    labels: Labels
    pixel_mm: float  # output pixel size (square)
    origin_mm: np.ndarray  # patient mm of output pixel (0, 0) on the central plane
    row_dir: np.ndarray  # patient unit vector toward the image right (increasing column)
    col_dir: np.ndarray  # patient unit vector toward the image bottom (increasing row)
    normal: np.ndarray  # viewing direction, row_dir x col_dir
    thickness_mm: float  # distance between the first and the last slab sample (0 when thin)
    slices: slice  # the volume slices (data axis 0) the samples touch, for Volume.wait_for

    def patient_point(self, column: float, row: float) -> np.ndarray:
        """Patient mm of an output pixel centre on the central plane."""
        return self.origin_mm + self.pixel_mm * (column * self.row_dir + row * self.col_dir)


def orientation_label(direction: np.ndarray) -> str:
    """The patient orientation letters of a direction, largest component first (PS3.3 C.7.6.1.1.1)."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    order = np.argsort(-np.abs(d), kind="stable")
    return "".join(LETTERS[i][0 if d[i] > 0 else 1] for i in order if abs(d[i]) >= LABEL_MIN)


def plan(volume: Volume, req: ViewRequest) -> View:
    """Turn ``req`` into a plane on ``volume``; ValueError when the request is invalid."""
    _check(req)
    lin = volume.affine()[:3, :3]
    try:
        inv = np.linalg.inv(lin)
    except np.linalg.LinAlgError as exc:
        raise ValueError("the volume geometry is degenerate") from exc
    corners = _corners(volume)
    centre = corners.mean(axis=0)
    default = volume.affine() @ np.array([*(n // 2 for n in volume.shape[::-1]), 1.0])
    full = req.view == "projection" or math.isinf(req.thickness)
    if req.view in STANDARD:
        u, v = STANDARD[req.view]
        point = default[:3].copy()
        if req.position is not None:
            point[AXIS[req.view]] = req.position
    elif req.view == "oblique":
        point = _vector(req.point, "point") if req.point is not None else default[:3]
        u, v = _oblique_axes(req)
    else:
        point = default[:3]
        u, v = _projection_axes(req.azimuth, req.elevation)
    n = np.cross(u, v)
    depth = (corners - point) @ n
    half_thick = 0.0 if full else req.thickness / 2
    if half_thick >= np.abs(depth).max():  # a slab deeper than the volume: all of it, on the same sample comb
        full = True
    if not full and (depth.min() > half_thick + 1e-6 or depth.max() < -half_thick - 1e-6):
        axis = f" ({'xyz'[AXIS[req.view]]} {point[AXIS[req.view]]:g} mm)" if req.view in STANDARD else ""
        raise ValueError(f"the {req.view} plane{axis} does not cross the volume "
                         f"(it spans {depth.min():.1f} to {depth.max():.1f} mm from the plane along its normal)")

    step = _native_step(inv, n)
    if full:
        k0 = math.floor(depth.min() / step + 1e-6)  # from the nearest to the farthest voxel centre
        k1 = math.ceil(depth.max() / step - 1e-6)
        point = point + n * step * (k0 + k1) / 2
        samples = k1 - k0 + 1
    else:
        samples = 2 * int(math.floor(req.thickness / (2 * step) + 0.5)) + 1

    a, b = (corners - point) @ u, (corners - point) @ v
    if req.view == "projection":  # a field of view that does not change while the azimuth turns
        rel = corners - centre
        radial = np.linalg.norm(rel - np.outer(rel @ Z, Z), axis=1)
        ext_u = 2 * radial.max()
        ext_v = 2 * (np.abs(rel @ Z) * math.cos(math.radians(req.elevation))
                     + radial * abs(math.sin(math.radians(req.elevation)))).max()
        mid_u, mid_v = (centre - point) @ u, (centre - point) @ v
    else:
        ext_u, ext_v = a.max() - a.min(), b.max() - b.min()
        mid_u, mid_v = (a.max() + a.min()) / 2, (b.max() + b.min()) / 2
    # square pixels: the finer voxel step of the two image axes on a standard view, the finest spacing otherwise
    pixel = min(_native_step(inv, u), _native_step(inv, v)) if req.view in STANDARD else float(min(volume.spacing))
    if req.width > 1:
        pixel = max(pixel, ext_u / (req.width - 1))
    if req.height > 1:
        pixel = max(pixel, ext_v / (req.height - 1))
    width = min(req.width, math.ceil(ext_u / pixel - 1e-6) + 1)
    height = min(req.height, math.ceil(ext_v / pixel - 1e-6) + 1)
    origin_mm = point + (mid_u - (width - 1) / 2 * pixel) * u + (mid_v - (height - 1) / 2 * pixel) * v

    o_vox = inv @ (origin_mm - volume.origin)
    u_vox, v_vox, w_vox = inv @ (u * pixel), inv @ (v * pixel), inv @ (n * step)
    plane = Plane(origin=_clean(o_vox), u=_clean(u_vox), v=_clean(v_vox), width=width, height=height,
                  w=_clean(w_vox), samples=samples, mode=req.mode,  # type: ignore[arg-type]
                  interpolation=req.interpolation)  # type: ignore[arg-type]
    labels = Labels(orientation_label(-u), orientation_label(u), orientation_label(-v), orientation_label(v))
    return View(plane=plane, labels=labels, pixel_mm=float(pixel), origin_mm=origin_mm, row_dir=u, col_dir=v,
                normal=n, thickness_mm=float((samples - 1) * step), slices=touched_slices(plane, volume.shape[0]))


def touched_slices(plane: Plane, nz: int) -> slice:
    """The range of data slices (axis 0, voxel z) that the plane's samples interpolate from."""
    half = (plane.samples - 1) / 2
    zs = [plane.origin[2] + c * plane.u[2] + r * plane.v[2] + k * plane.w[2]
          for c in (0, plane.width - 1) for r in (0, plane.height - 1) for k in (-half, half)]
    lo = max(0, math.floor(min(zs) + 1e-6))
    hi = min(nz - 1, math.ceil(max(zs) - 1e-6))
    return slice(lo, max(lo, hi + 1))


def _check(req: ViewRequest) -> None:
    if req.view not in VIEWS:
        raise ValueError(f"unknown view {req.view!r}: expected one of {', '.join(VIEWS)}")
    if req.mode not in MODES:
        raise ValueError(f"unknown slab mode {req.mode!r}: expected one of {', '.join(MODES)}")
    if req.interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {req.interpolation!r}: expected linear or nearest")
    for name in ("width", "height"):
        size = getattr(req, name)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or not 1 <= size <= MAX_SIZE:
            raise ValueError(f"{name} must be an integer from 1 to {MAX_SIZE}, not {size!r}")
    if not _is_number(req.thickness) or math.isnan(req.thickness) or req.thickness < 0:
        raise ValueError(f"slab thickness must be 0 (thin), a positive number of mm or infinite, not {req.thickness}")
    for name in ("position", "azimuth", "elevation"):
        value = getattr(req, name)
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number, not {value!r}")
    if req.view == "oblique":
        if (req.normal is None) == (req.angles is None):
            raise ValueError("an oblique view needs either a normal or rotation angles (not both)")
    elif req.normal is not None or req.angles is not None or req.point is not None or req.up is not None:
        raise ValueError("point, normal, angles and up apply to oblique views only")
    if req.position is not None and req.view not in STANDARD:
        raise ValueError("position applies to axial, coronal and sagittal views; oblique views take a point")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _vector(value: Sequence[float], name: str, unit: bool = False) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be three numbers") from exc
    if vec.shape != (3,) or not np.isfinite(vec).all():
        raise ValueError(f"{name} must be three finite numbers, not {value!r}")
    if unit:
        norm = np.linalg.norm(vec)
        if norm < 1e-9:
            raise ValueError(f"{name} must not be the zero vector")
        vec = vec / norm
    return vec


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = (k for k in range(3) if k != axis)
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _oblique_axes(req: ViewRequest) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of an oblique plane. By normal: the normal turned to face like the nearest standard view,
    the top toward that view's top (or ``up``). By angles: the axial frame rotated about x, then y, then z."""
    if req.angles is not None:
        ax, ay, az = _vector(req.angles, "angles")
        rot = _rotation(2, az) @ _rotation(1, ay) @ _rotation(0, ax)
        u, v = rot @ X, rot @ Y
        if req.up is None:
            return u, v
        n = np.cross(u, v)
        up = _vector(req.up, "up", unit=True)
    else:
        n = _vector(req.normal, "normal", unit=True)  # type: ignore[arg-type]
        ref = max(STANDARD.values(), key=lambda uv: abs(n @ np.cross(*uv)))
        if n @ np.cross(*ref) < 0:
            n = -n
        up = _vector(req.up, "up", unit=True) if req.up is not None else -ref[1]
    up = up - (up @ n) * n
    if np.linalg.norm(up) < 1e-3:
        raise ValueError("the up vector must not be parallel to the plane normal")
    v = -up / np.linalg.norm(up)
    return np.cross(v, n), v


def _projection_axes(azimuth: float, elevation: float) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of a projection: the coronal view turned by ``azimuth`` about the head axis, then tilted."""
    rot = _rotation(2, azimuth)
    u, v, n = rot @ X, rot @ -Z, rot @ Y
    ce, se = math.cos(math.radians(elevation)), math.sin(math.radians(elevation))
    return u, ce * v - se * n


def _corners(volume: Volume) -> np.ndarray:
    """Patient mm of the 8 corner voxel centres."""
    nz, ny, nx = volume.shape
    idx = np.array([[x, y, z, 1.0] for x in (0, nx - 1) for y in (0, ny - 1) for z in (0, nz - 1)])
    return (idx @ volume.affine().T)[:, :3]


def _native_step(inv: np.ndarray, direction: np.ndarray) -> float:
    """mm per voxel step along ``direction``: one voxel along the axis that direction crosses fastest."""
    return float(1.0 / np.abs(inv @ direction).max())


def _clean(vec: np.ndarray) -> np.ndarray:
    """Snap float noise (1e-9 of a voxel) to integers and zero, so that aligned planes read as aligned."""
    near = np.round(vec)
    return np.where(np.abs(vec - near) < 1e-9, near, vec)
