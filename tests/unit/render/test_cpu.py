"""The CPU backend on the analytic phantom: MIP maxima where the features are, oblique cross-sections of
spheres, rods as lines and points, orientation, fast path against the numba kernels, an independent
numpy sampler, nearest/linear, fill, MinIP/mean, anisotropic spacing and rotated acquisitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hub.render import cpu, kernels, window
from hub.render.cpu import CpuBackend
from hub.render.plane import Plane
from hub.render.views import View, ViewRequest, plan
from hub.render.volume import Volume
from tests.render_phantom import AIR, features, phantom_volume
from tests.unit.render.reference import reference

SHAPE = (64, 80, 96)  # (nz, ny, nx)
BACKEND = CpuBackend()


@pytest.fixture(scope="module")
def vol() -> Volume:
    kernels.warm()
    return phantom_volume(SHAPE)


def render(volume: Volume, **req: object) -> tuple[np.ndarray, View]:
    view = plan(volume, ViewRequest(**req))  # type: ignore[arg-type]
    return BACKEND.render(volume.data, view.plane, float(AIR)), view


def pixel_of(view: View, patient: np.ndarray) -> tuple[float, float]:
    """(column, row) of a patient point projected on the view."""
    rel = np.asarray(patient, float) - view.origin_mm
    return float(rel @ view.row_dir / view.pixel_mm), float(rel @ view.col_dir / view.pixel_mm)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    assert len(rows), "empty mask"
    return float(cols.mean()), float(rows.mean())


@pytest.mark.parametrize("view,expect", [
    ("axial", lambda x, y, z: (x, y)),
    ("coronal", lambda x, y, z: (x, SHAPE[0] - 1 - z)),  # head at the top
    ("sagittal", lambda x, y, z: (y, SHAPE[0] - 1 - z)),  # anterior on the left
])
def test_full_mip_shows_the_brightest_sphere_where_it_is(vol, view, expect):
    image, v = render(vol, view=view, thickness=math.inf)
    assert v.plane.samples == {"axial": 64, "coronal": 80, "sagittal": 96}[view]
    assert image.dtype == np.int16 and image.max() == 1500  # fast path: exact values, the volume's dtype
    sphere = features(SHAPE)[0][0]
    col, row = centroid(image == 1500)
    ex, ey = expect(*sphere.centre)
    assert abs(col - ex) < 0.5 and abs(row - ey) < 0.5
    assert pixel_of(v, vol.affine()[:3] @ [*sphere.centre, 1]) == pytest.approx((ex, ey), abs=1e-6)


def test_oblique_slab_mip_centres_the_sphere(vol):
    sphere = features(SHAPE)[0][0]
    centre = vol.affine()[:3] @ [*sphere.centre, 1]
    for interpolation in ("linear", "nearest"):
        image, v = render(vol, view="oblique", point=tuple(centre), normal=(1, 2, 3), thickness=8,
                          interpolation=interpolation)
        assert v.plane.samples > 1 and image.dtype == np.float32
        col, row = centroid(image >= 1499)
        ex, ey = pixel_of(v, centre)
        assert abs(col - ex) < 0.6 and abs(row - ey) < 0.6, interpolation
        assert image.max() == pytest.approx(1500, abs=1e-3)


@pytest.mark.parametrize("distance", [0.0, 3.0, 5.0])
def test_oblique_plane_cuts_a_sphere_as_a_disc_of_radius_sqrt_r2_minus_d2(distance):
    volume = phantom_volume((96, 112, 128))
    sphere = features((96, 112, 128))[0][0]
    normal = np.array([1.0, -2.0, 2.0]) / 3
    centre = volume.affine()[:3] @ [*sphere.centre, 1]
    image, v = render(volume, view="oblique", point=tuple(centre + distance * normal), normal=tuple(normal))
    ex, ey = pixel_of(v, centre)
    rows, cols = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    near = (cols - ex) ** 2 + (rows - ey) ** 2 < (sphere.radius + 3) ** 2
    disc = near & (image > (AIR + sphere.value) / 2)
    radius = math.sqrt(disc.sum() / math.pi) * v.pixel_mm
    assert radius == pytest.approx(math.sqrt(sphere.radius**2 - distance**2), abs=0.6)
    col, row = centroid(disc)
    assert abs(col - ex) < 0.3 and abs(row - ey) < 0.3


def test_rods_are_lines_and_points(vol):
    nz, ny, nx = SHAPE
    _, rods = features(SHAPE)
    along_x, _, along_z = rods
    # an axial slice at the x-rod's height: the x-rod is a row, the z-rod a point
    image, _ = render(vol, view="axial", position=along_x.at[1])
    row = image[round(along_x.at[0])]
    assert (row == along_x.value).mean() > 0.85
    zx, zy = along_z.at
    assert image[round(zy), round(zx)] == along_z.value
    assert (image == along_z.value).sum() <= math.pi * (along_z.radius + 1) ** 2
    # the z-rod is a vertical line in the coronal and sagittal MIPs, at its x and its y
    cor, _ = render(vol, view="coronal", thickness=math.inf)
    sag, _ = render(vol, view="sagittal", thickness=math.inf)
    assert (cor[:, round(zx)] >= along_z.value).all()
    assert (sag[:, round(zy)] >= along_z.value).all()


def test_orientation_patient_left_is_image_right(vol):
    """Sphere 1 (x = 0.3 nx, patient right) on the left half of the axial MIP, sphere 2 (x = 0.7 nx) right."""
    image, v = render(vol, view="axial", thickness=math.inf)
    assert v.labels == ("R", "L", "A", "P")
    assert centroid(image == 1500)[0] < image.shape[1] / 2 < centroid(image == 800)[0]
    # and anterior (small y) at the top: sphere 3 (y = 0.25 ny) above sphere 2 (y = 0.6 ny)
    assert centroid(image == 300)[1] < centroid(image == 800)[1]


@pytest.mark.parametrize("req", [
    dict(view="axial", position=20.0),
    dict(view="coronal", position=30.0),
    dict(view="sagittal", position=40.0),
    dict(view="axial", position=32.0, thickness=20, mode="mip"),
    dict(view="coronal", position=40.0, thickness=12, mode="minip"),
    dict(view="sagittal", position=50.0, thickness=16, mode="avg"),  # the numba x-axis reduction
    dict(view="sagittal", thickness=math.inf, mode="mip"),
])
def test_fast_path_equals_numba_kernels(vol, req):
    image, v = render(vol, **req)
    assert image.dtype == (np.float32 if req.get("mode") == "avg" else np.int16)
    via_kernel = cpu._render_kernel(vol.data, v.plane, float(AIR))
    np.testing.assert_allclose(image.astype(np.float32), via_kernel, atol=1e-3)
    a, b = window.apply(image, 40, 400), window.apply(via_kernel, 40, 400)
    assert np.abs(a.astype(int) - b).max() <= 1


@pytest.mark.parametrize("req", [
    dict(view="oblique", angles=(25, -10, 15)),
    dict(view="oblique", angles=(25, -10, 15), interpolation="nearest"),
    dict(view="oblique", normal=(0.2, -1, 0.4), thickness=9, mode="mip"),
    dict(view="oblique", normal=(0.2, -1, 0.4), thickness=9, mode="minip", interpolation="nearest"),
    dict(view="oblique", normal=(1, 1, 1), thickness=7, mode="avg"),
    dict(view="projection", azimuth=35, elevation=15, width=48, height=40),
    dict(view="axial", position=20.4),  # between slices: interpolated
])
def test_kernels_match_an_independent_sampler(vol, req):
    image, v = render(vol, **req)
    np.testing.assert_allclose(image, reference(vol.data, v.plane, float(AIR)), atol=0.02)


def test_nearest_takes_voxel_values_and_linear_blends(vol):
    values = {AIR, 300, 400, 600, 800, 1000, 1500}
    through = tuple(vol.affine()[:3] @ [*features(SHAPE)[0][0].centre, 1])  # the brightest sphere's centre
    near, _ = render(vol, view="oblique", point=through, angles=(20, 30, 0), interpolation="nearest")
    lin, _ = render(vol, view="oblique", point=through, angles=(20, 30, 0))
    assert set(np.unique(near).tolist()) <= values and 1500 in near
    blended = ~np.isin(lin, list(values))
    assert 30 < blended.sum() < 0.05 * lin.size  # only the edges of the disc and of the rods
    assert (near == lin).mean() > 0.95  # the same inside features and in air
    # half a voxel between two slices: linear is the mean of the two slices
    half = Plane(origin=np.array([0.0, 0.0, 10.5]), u=np.array([1.0, 0, 0]), v=np.array([0, 1.0, 0]),
                 width=96, height=80, w=np.zeros(3))
    np.testing.assert_allclose(BACKEND.render(vol.data, half, 0.0), vol.data[10:12].astype(np.float32).mean(axis=0))


@pytest.mark.parametrize("shift", [(-5.0, -7.0), (-5.5, -7.25)])  # on the grid (fast path) and off it
def test_fill_outside_the_volume(vol, shift):
    plane = Plane(origin=np.array([shift[0], shift[1], 32.0]), u=np.array([1.0, 0, 0]), v=np.array([0, 1.0, 0]),
                  width=96, height=80, w=np.array([0, 0, 1.0]), samples=5)
    image = BACKEND.render(vol.data, plane, -2048.0)
    cols = -shift[0] if float(shift[0]).is_integer() else math.ceil(-shift[0])
    rows = -shift[1] if float(shift[1]).is_integer() else math.ceil(-shift[1])
    assert (image[:, :int(cols)] == -2048).all() and (image[:int(rows)] == -2048).all()
    assert (image[int(rows):, int(cols):] > -2048).all()
    assert (image[int(rows):, int(cols):] >= AIR).all()
    gone = Plane(origin=np.array([0.0, 0, 80.0]), u=np.array([1.0, 0, 0]), v=np.array([0, 1.0, 0]),
                 width=4, height=3, w=np.zeros(3))
    assert (BACKEND.render(vol.data, gone, -7.0) == -7).all()


def test_mip_minip_avg_on_a_ramp():
    nz, ny, nx = 20, 12, 14
    ramp = Volume(data=np.broadcast_to((np.arange(nz) * 10).astype(np.int16)[:, None, None], (nz, ny, nx)).copy(),
                  origin=np.zeros(3), row_dir=np.array([1.0, 0, 0]), col_dir=np.array([0, 1.0, 0]),
                  normal=np.array([0, 0, 1.0]), spacing=np.ones(3))
    for mode, expect in (("mip", 120), ("minip", 80), ("avg", 100)):
        image, v = render(ramp, view="axial", position=10.0, thickness=4, mode=mode)
        assert v.plane.samples == 5 and (image == expect).all(), mode
        # the same slab off the voxel grid in-plane goes through the kernel: the ramp is exact there too
        off = Plane(origin=v.plane.origin + [0.25, 0.5, 0], u=v.plane.u, v=v.plane.v, width=nx - 1,
                    height=ny - 1, w=v.plane.w, samples=5, mode=mode)  # type: ignore[arg-type]
        np.testing.assert_allclose(BACKEND.render(ramp.data, off, 0.0), expect, atol=1e-3)
    # a slab reaching past the last slice ignores the samples outside
    image, _ = render(ramp, view="axial", position=19.0, thickness=4, mode="avg")
    assert (image == 180).all()  # mean of slices 17, 18, 19


def test_anisotropic_spacing_keeps_the_physical_aspect_ratio():
    volume = phantom_volume(SHAPE, spacing=(0.5, 1.0, 2.0))
    sphere = features(SHAPE)[0][0]
    image, v = render(volume, view="axial", position=sphere.centre[2] * 2.0)
    assert v.pixel_mm == 0.5 and image.shape == (2 * (SHAPE[1] - 1) + 1, SHAPE[2])
    rows, cols = np.nonzero(image > 1000)
    # the sphere is R voxels: R*0.5 mm across columns, R*1 mm across rows -> 2x as many rows at 0.5 mm
    assert (rows.max() - rows.min()) / (cols.max() - cols.min()) == pytest.approx(2.0, rel=0.1)
    coronal, cv = render(volume, view="coronal", width=200, height=200)
    extent_x, extent_z = (SHAPE[2] - 1) * 0.5, (SHAPE[0] - 1) * 2.0
    assert cv.plane.width <= 200 and cv.plane.height <= 200
    assert (coronal.shape[1] - 1) / (coronal.shape[0] - 1) == pytest.approx(extent_x / extent_z, rel=0.02)


def coronal_acquisition(axial: Volume) -> Volume:
    """The same patient and geometry stored as coronal slices: rows go to the feet, slices go posterior."""
    nz = axial.shape[0]
    data = np.ascontiguousarray(axial.data.transpose(1, 0, 2)[:, ::-1, :])  # [y, nz-1-z, x]
    sx, sy, sz = axial.spacing
    return Volume(data=data, origin=axial.origin + (nz - 1) * sz * axial.normal, row_dir=axial.row_dir,
                  col_dir=-axial.normal, normal=axial.col_dir, spacing=np.array([sx, sz, sy]), window=axial.window)


@pytest.mark.parametrize("req", [
    dict(view="axial", position=130.0),  # slice 20
    dict(view="axial", position=130.0, thickness=10, mode="mip"),
    dict(view="sagittal", thickness=math.inf),
    dict(view="oblique", point=(0.0, 5.0, 150.0), angles=(20, 10, 0), thickness=6, mode="avg"),
    dict(view="projection", azimuth=40),
])
def test_a_coronal_acquisition_renders_like_the_axial_one(req):
    axial = phantom_volume(SHAPE, spacing=(0.8, 0.8, 1.5), origin=(-40, -30, 100))
    coronal = coronal_acquisition(axial)
    assert np.allclose(axial.affine()[:3] @ [5, 6, 7, 1], coronal.affine()[:3] @ [5, SHAPE[0] - 1 - 7, 6, 1])
    a, va = render(axial, **req)
    b, vb = render(coronal, **req)
    assert a.shape == b.shape and va.labels == vb.labels
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=0.05)


def test_warm_compiles_every_kernel():
    cpu.warm()
    for kernel in (kernels.render_thin, kernels.render_slab, kernels.reduce_x):
        assert kernel.signatures, kernel


@pytest.mark.parametrize("mode", ["mip", "minip", "avg"])
def test_threaded_reductions_match_the_kernels(mode):
    """Blocks of a million voxels and more are split between threads (z halves, then combined)."""
    data = np.random.default_rng(5).integers(-1000, 2000, size=(130, 90, 100), dtype=np.int16)
    volume = Volume(data=data, origin=np.zeros(3), row_dir=np.array([1.0, 0, 0]), col_dir=np.array([0, 1.0, 0]),
                    normal=np.array([0, 0, 1.0]), spacing=np.ones(3))
    for view in ("axial", "coronal", "sagittal"):
        image, v = render(volume, view=view, thickness=math.inf, mode=mode)
        assert image.dtype == (np.float32 if mode == "avg" else np.int16)
        np.testing.assert_allclose(image, cpu._render_kernel(data, v.plane, 0.0), rtol=1e-6, atol=1e-3)
    expect = {"mip": data.max(axis=0), "minip": data.min(axis=0), "avg": data.mean(axis=0)}[mode]
    np.testing.assert_allclose(render(volume, view="axial", thickness=math.inf, mode=mode)[0], expect, rtol=1e-6)


@pytest.mark.parametrize("req", [
    dict(view="sagittal", thickness=6, mode="mip"),
    dict(view="sagittal", thickness=6, mode="minip", interpolation="nearest"),
    dict(view="coronal"),
    dict(view="coronal", thickness=5, mode="avg"),
    dict(view="axial", position=20.3, thickness=3, mode="mip"),  # slab samples between slices
    dict(view="sagittal", thickness=6, width=40, height=30),  # size limits: off the grid on both image axes
    dict(view="coronal", thickness=4, width=40, height=30, mode="avg"),
])
def test_separable_path_for_slices_thicker_than_pixels(req):
    """0.7 mm pixels, 1 mm slices: sagittal/coronal rows fall between slices; two reads per sample."""
    volume = phantom_volume((40, 48, 56), spacing=(0.7, 0.7, 1.0))
    image, v = render(volume, **req)
    assert cpu._grid_steps(v.plane) is None and cpu._separable(volume.data, v.plane, 0.0) is not None
    np.testing.assert_allclose(image, reference(volume.data, v.plane, float(AIR)), atol=0.02)


def test_random_oblique_planes_leaving_the_volume_sideways_match_the_sampler():
    """Planes through random points with random normals: many rows leave the volume through a side, where
    the kernels fill the rest of the row (a fill loop once ran past the row end and corrupted the heap)."""
    volume = phantom_volume((64, 80, 96), spacing=(0.8, 0.8, 1.5), origin=(-100.0, -120.0, 50.0))
    rng = np.random.default_rng(3)
    backend = CpuBackend()
    checked = 0
    for _ in range(40):
        normal = tuple(float(x) for x in rng.normal(size=3))
        point = tuple(float(x) for x in rng.uniform([-100, -120, 50], [-24, -56, 144]))
        for extra in ({}, {"thickness": 6.0, "mode": "mip"}, {"interpolation": "nearest"}):
            try:
                plane = plan(volume, ViewRequest("oblique", normal=normal, point=point, **extra)).plane
            except ValueError:
                continue
            dims = (96, 80, 64)
            for r in range(plane.height):  # every row's inside range stays within the row
                base, c0, c1 = plane.origin + r * plane.v, 0, plane.width
                for axis in range(3):
                    c0, c1 = kernels._clip(base[axis], plane.u[axis], dims[axis], c0, c1)
                assert 0 <= c0 <= c1 <= plane.width, (normal, point, r, c0, c1)
            out = backend.render(volume.data, plane, -2000.0)
            assert out.shape == (plane.height, plane.width)
            np.testing.assert_allclose(out, reference(volume.data, plane, -2000.0), atol=0.02)
            checked += 1
    assert checked >= 100
