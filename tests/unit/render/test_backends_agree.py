"""The OpenGL and CPU backends give the same image within one grey level after windowing, on every kind
of view the service plans (hub.render.views), on the analytic phantom. CI installs Mesa, so a GL context
(EGL on llvmpipe, or OSMesa) exists there; elsewhere the test says why it skipped."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from hub.render import gl, views, window
from hub.render.cpu import CpuBackend
from tests.render_phantom import phantom_volume
from tests.unit.render.gl_support import require_gl

FILL = -32768.0  # hub.services.render.OUTSIDE

REQUESTS = [
    views.ViewRequest("axial"),
    views.ViewRequest("axial", position=20.5, thickness=8, mode="mip"),
    views.ViewRequest("coronal", thickness=6, mode="avg"),
    views.ViewRequest("sagittal", thickness=10, mode="minip"),
    views.ViewRequest("oblique", normal=(1, 1, 1)),
    views.ViewRequest("oblique", angles=(25, -10, 40), thickness=12, mode="mip"),
    views.ViewRequest("oblique", normal=(0, 1, 2), thickness=5, mode="avg", interpolation="nearest"),
    views.ViewRequest("projection", azimuth=35, elevation=20, mode="mip"),
    views.ViewRequest("projection", azimuth=90, mode="avg", width=64, height=64),
]


@pytest.fixture(scope="module")
def gl_backend() -> Iterator[gl.GlBackend]:
    require_gl()
    backend = gl.GlBackend()
    yield backend
    backend.close()


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: f"{r.view}-{r.mode}-{r.thickness}-{r.interpolation}")
def test_gl_and_cpu_agree_within_one_grey_level(gl_backend: gl.GlBackend, req: views.ViewRequest) -> None:
    volume = phantom_volume((40, 48, 56), spacing=(0.9, 0.9, 1.6))
    plane = views.plan(volume, req).plane
    cpu = CpuBackend().render(volume.data, plane, FILL)
    on_gl = gl_backend.render(volume.data, plane, FILL)
    assert cpu.shape == on_gl.shape == (plane.height, plane.width)
    for center, width in ((40.0, 400.0), (500.0, 2000.0)):
        a = window.apply(cpu, center, width).astype(int)
        b = window.apply(on_gl, center, width).astype(int)
        assert np.abs(a - b).max() <= 1, (req, center, width, np.abs(a - b).max())
    assert np.abs(window.apply(cpu, 500, 2000).astype(int)).std() > 0  # not an empty image
