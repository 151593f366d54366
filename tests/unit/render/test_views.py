"""Views as planes: standard views on the voxel grid, labels, positions, slabs, oblique frames (by normal,
angles, up vector), the rotating projection, output size limits and invalid requests."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hub.render.views import ViewRequest, orientation_label, plan, touched_slices
from tests.render_phantom import phantom_volume

SHAPE = (64, 80, 96)  # (nz, ny, nx)


@pytest.fixture(scope="module")
def vol():
    return phantom_volume(SHAPE, origin=(-50.0, -40.0, 100.0))


@pytest.mark.parametrize("view,u,v,size,labels", [
    ("axial", (1, 0, 0), (0, 1, 0), (96, 80), ("R", "L", "A", "P")),
    ("coronal", (1, 0, 0), (0, 0, -1), (96, 64), ("R", "L", "H", "F")),
    ("sagittal", (0, 1, 0), (0, 0, -1), (80, 64), ("A", "P", "H", "F")),
])
def test_standard_views_lie_on_the_voxel_grid(vol, view, u, v, size, labels):
    p = plan(vol, ViewRequest(view=view))
    assert (p.plane.width, p.plane.height) == size and p.plane.samples == 1
    np.testing.assert_array_equal(p.plane.u, u)
    np.testing.assert_array_equal(p.plane.v, v)
    assert np.array_equal(p.plane.origin, np.round(p.plane.origin))  # a voxel centre: the numpy fast path
    assert p.labels == labels and p.pixel_mm == 1.0
    np.testing.assert_allclose(np.cross(p.row_dir, p.col_dir), p.normal)


def test_position_is_patient_mm_along_the_view_axis(vol):
    p = plan(vol, ViewRequest(view="axial", position=110.0))  # origin z = 100 mm, 1 mm slices
    assert p.plane.origin[2] == 10.0 and p.slices == slice(10, 11)
    p = plan(vol, ViewRequest(view="coronal", position=-30.5))
    assert p.plane.origin[1] == 9.5 and p.slices == slice(0, 64)
    p = plan(vol, ViewRequest(view="sagittal", position=0.0))
    assert p.plane.origin[0] == 50.0
    assert p.patient_point(0, 0)[0] == 0.0
    default = plan(vol, ViewRequest(view="axial"))
    assert default.plane.origin[2] == 32.0  # the centre slice


def test_slab_thickness_and_full_volume(vol):
    p = plan(vol, ViewRequest(view="axial", position=132.0, thickness=20))
    assert p.plane.samples == 21 and p.thickness_mm == 20.0 and p.slices == slice(22, 43)
    np.testing.assert_array_equal(p.plane.w, (0, 0, 1))
    deep = plan(vol, ViewRequest(view="axial", position=132.0, thickness=1e9))  # deeper than the volume
    assert deep.plane.samples == 64 and deep.slices == slice(0, 64)
    thin = plan(vol, ViewRequest(view="axial", thickness=0.4))  # under one slice: thin
    assert thin.plane.samples == 1
    full = plan(vol, ViewRequest(view="coronal", thickness=math.inf, mode="minip"))
    assert full.plane.samples == 80 and full.plane.mode == "minip"
    first = full.plane.origin - (full.plane.samples - 1) / 2 * full.plane.w
    assert first[1] == 0.0 and (first + 79 * full.plane.w)[1] == 79.0


def test_anisotropic_volume_gets_square_pixels_and_slab_steps_of_one_voxel():
    volume = phantom_volume(SHAPE, spacing=(0.7, 0.7, 2.5))
    p = plan(volume, ViewRequest(view="coronal", thickness=10))
    assert p.pixel_mm == 0.7 and p.plane.width == 96
    assert p.plane.height == 226  # the z extent, 157.5 mm, at 0.7 mm
    np.testing.assert_allclose(p.plane.v, (0, 0, -0.7 / 2.5))
    assert p.plane.samples == 2 * round(10 / 1.4) + 1  # slab steps of one row (0.7 mm)


def test_size_limits_keep_the_aspect_ratio(vol):
    p = plan(vol, ViewRequest(view="axial", width=48, height=48))
    assert p.plane.width == 48 and p.plane.height == 41 and p.pixel_mm == pytest.approx(95 / 47)
    np.testing.assert_allclose(p.plane.u, (95 / 47, 0, 0))
    np.testing.assert_allclose(p.plane.v, (0, 95 / 47, 0))
    p = plan(vol, ViewRequest(view="sagittal", width=1000, height=16))
    assert p.plane.height == 16 and p.plane.width == math.ceil(79 / (63 / 15) - 1e-6) + 1


def test_oblique_by_normal_keeps_the_radiological_frame(vol):
    for normal in ((0, 0, 1), (0, 0, -1)):  # either sign: still viewed from the feet, not mirrored
        p = plan(vol, ViewRequest(view="oblique", normal=normal))
        np.testing.assert_allclose(p.row_dir, (1, 0, 0), atol=1e-12)
        np.testing.assert_allclose(p.col_dir, (0, 1, 0), atol=1e-12)
    tilted = plan(vol, ViewRequest(view="oblique", normal=(0, -0.5, math.sqrt(3) / 2)))
    assert tilted.labels == ("R", "L", "AF", "PH")  # the top: anterior and a little toward the feet
    np.testing.assert_allclose(tilted.normal, (0, -0.5, math.sqrt(3) / 2), atol=1e-12)
    assert max(abs(tilted.plane.w)) == pytest.approx(1.0)  # slab steps: one voxel along the dominant axis
    near_sagittal = plan(vol, ViewRequest(view="oblique", normal=(-1, 0.15, 0.1)))
    assert near_sagittal.labels[:2] == ("A", "P") and near_sagittal.labels[2].startswith("H")
    up = plan(vol, ViewRequest(view="oblique", normal=(0, 0, 1), up=(1, 0, 0)))  # patient left at the top
    assert up.labels == ("A", "P", "L", "R")


def test_oblique_by_angles_rotates_the_axial_frame(vol):
    same = plan(vol, ViewRequest(view="oblique", angles=(0, 0, 0)))
    axial = plan(vol, ViewRequest(view="axial"))
    np.testing.assert_allclose(same.plane.u, axial.plane.u, atol=1e-12)
    np.testing.assert_allclose(same.plane.v, axial.plane.v, atol=1e-12)
    turned = plan(vol, ViewRequest(view="oblique", angles=(0, 0, 90)))  # about the head axis
    assert turned.labels == ("A", "P", "L", "R")
    tilted = plan(vol, ViewRequest(view="oblique", angles=(30, 0, 0)))  # about the left-right axis
    np.testing.assert_allclose(tilted.col_dir, (0, math.cos(math.pi / 6), math.sin(math.pi / 6)), atol=1e-12)
    assert tilted.labels == ("R", "L", "AF", "PH")


def test_projection_turns_about_the_head_axis_and_covers_the_volume(vol):
    front = plan(vol, ViewRequest(view="projection"))
    assert front.labels == ("R", "L", "H", "F") and front.plane.mode == "mip"
    np.testing.assert_allclose(front.normal, (0, 1, 0), atol=1e-12)
    left = plan(vol, ViewRequest(view="projection", azimuth=90))
    assert left.labels == ("A", "P", "H", "F")
    oblique = plan(vol, ViewRequest(view="projection", azimuth=30))
    assert oblique.labels == ("RA", "LP", "H", "F")
    sizes = {(plan(vol, ViewRequest(view="projection", azimuth=a)).plane.width,
              plan(vol, ViewRequest(view="projection", azimuth=a)).plane.height) for a in range(0, 360, 15)}
    assert len(sizes) == 1  # frames of a cine keep their size
    for az, el in ((0, 0), (30, 0), (75, 20), (200, -35)):
        p = plan(vol, ViewRequest(view="projection", azimuth=az, elevation=el))
        # every voxel centre projects inside the image and inside the sample range along the view
        idx = np.array([[x, y, z, 1.0] for x in (0, 95) for y in (0, 79) for z in (0, 63)])
        for corner in (idx @ vol.affine().T)[:, :3]:
            col, row = (corner - p.origin_mm) @ p.row_dir / p.pixel_mm, (corner - p.origin_mm) @ p.col_dir / p.pixel_mm
            assert -1e-6 <= col <= p.plane.width - 1 + 1e-6 and -1e-6 <= row <= p.plane.height - 1 + 1e-6
            depth = (corner - p.origin_mm) @ p.normal
            assert abs(depth) <= p.thickness_mm / 2 + 1e-6
    above = plan(vol, ViewRequest(view="projection", elevation=30))
    assert above.normal[2] < 0  # looking down from the head end


def test_orientation_label():
    assert orientation_label(np.array([1.0, 0, 0])) == "L"
    assert orientation_label(np.array([0, -1.0, 0])) == "A"
    assert orientation_label(np.array([-0.8, 0.1, 0.59])) == "RH"
    assert orientation_label(np.array([0.5, -0.7, 0.5])) == "ALH"


def test_touched_slices_follow_the_plane(vol):
    p = plan(vol, ViewRequest(view="oblique", normal=(0, 1, 1), point=(0.0, 0.0, 132.0)))
    s = touched_slices(p.plane, 64)
    assert 0 <= s.start < 32 < s.stop <= 64


@pytest.mark.parametrize("req,message", [
    (ViewRequest(view="diagonal"), "unknown view"),
    (ViewRequest(mode="max"), "unknown slab mode"),
    (ViewRequest(interpolation="cubic"), "unknown interpolation"),
    (ViewRequest(width=0), "width"),
    (ViewRequest(height=5000), "height"),
    (ViewRequest(thickness=-1), "thickness"),
    (ViewRequest(thickness=math.nan), "thickness"),
    (ViewRequest(position=math.inf), "position"),
    (ViewRequest(position="12"), "position"),  # type: ignore[arg-type]
    (ViewRequest(thickness="thick"), "thickness"),  # type: ignore[arg-type]
    (ViewRequest(view="axial", position=500.0), "does not cross the volume"),
    (ViewRequest(view="oblique"), "normal or rotation angles"),
    (ViewRequest(view="oblique", normal=(0, 0, 1), angles=(0, 0, 0)), "normal or rotation angles"),
    (ViewRequest(view="oblique", normal=(0, 0, 0)), "zero vector"),
    (ViewRequest(view="oblique", normal=(0, 1)), "three"),
    (ViewRequest(view="oblique", normal=(0, 0, 1), up=(0, 0, 2)), "parallel"),
    (ViewRequest(view="oblique", normal=(0, 0, 1), point=(0.0, 0.0, 1000.0)), "does not cross"),
    (ViewRequest(view="axial", normal=(0, 0, 1)), "oblique views only"),
    (ViewRequest(view="oblique", normal=(0, 0, 1), position=3.0), "position applies"),
])
def test_invalid_requests(vol, req, message):
    with pytest.raises(ValueError, match=message):
        plan(vol, req)
