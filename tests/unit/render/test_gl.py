"""The OpenGL backend against an independent numpy sampler on the analytic phantom: thin and oblique MPR,
slab MIP/MinIP/mean, nearest and trilinear, fill outside, texture reuse, concurrent callers, OSMesa."""

from __future__ import annotations

import ctypes.util
import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hub.render import gl
from hub.render.plane import Plane
from tests.render_phantom import features, phantom_data
from tests.unit.render.gl_support import require_gl
from tests.unit.render.reference import reference

SHAPE = (32, 40, 48)  # (nz, ny, nx)
GREY = 400 / 255  # one grey level of a 400 HU wide window
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def backend() -> Iterator[gl.GlBackend]:
    require_gl()
    b = gl.GlBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return phantom_data(SHAPE)


def rotation(ax: float, az: float) -> np.ndarray:
    """Columns: unit u, v, w of a plane tilted by ``ax`` degrees about x, then ``az`` about z."""
    a, b = np.radians(ax), np.radians(az)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    return rz @ rx


def oblique(samples: int = 1, mode: str = "mip", interpolation: str = "linear", *, size: int = 56,
            step: float = 0.9, slab_step: float = 0.7, centre: tuple[float, float, float] = (20.3, 17.1, 15.2),
            angles: tuple[float, float] = (33.0, 21.0)) -> Plane:
    rot = rotation(*angles)
    u, v, w = rot[:, 0] * step, rot[:, 1] * step, rot[:, 2] * slab_step
    origin = np.array(centre) - (size - 1) / 2 * (u + v)
    return Plane(origin=origin, u=u, v=v, width=size, height=size - 6, w=w, samples=samples, mode=mode,  # type: ignore[arg-type]
                 interpolation=interpolation)  # type: ignore[arg-type]


def axial(z: float, samples: int = 1, mode: str = "mip", interpolation: str = "linear") -> Plane:
    return Plane(origin=np.array([0.0, 0.0, z]), u=np.array([1.0, 0, 0]), v=np.array([0, 1.0, 0]), width=SHAPE[2],
                 height=SHAPE[1], w=np.array([0, 0, 1.0]), samples=samples, mode=mode,  # type: ignore[arg-type]
                 interpolation=interpolation)  # type: ignore[arg-type]


def test_axial_slices_are_exact(backend: gl.GlBackend, data: np.ndarray) -> None:
    out = backend.render(data, axial(16), -2000)
    assert out.dtype == np.float32 and out.shape == (SHAPE[1], SHAPE[2])
    assert np.array_equal(out, data[16].astype(np.float32))
    between = backend.render(data, axial(15.25), -2000)
    assert np.allclose(between, 0.75 * data[15] + 0.25 * data[16], atol=1e-2)


def test_oblique_mpr_matches_the_reference(backend: gl.GlBackend, data: np.ndarray) -> None:
    plane = oblique()
    out, ref = backend.render(data, plane, -3000), reference(data, plane, -3000)
    assert np.abs(out - ref).max() <= GREY
    assert (ref == -3000).any() and (ref > 1000).any()  # the plane leaves the volume and cuts a bright sphere


@pytest.mark.parametrize("mode", ["mip", "minip", "avg"])
def test_oblique_slab_matches_the_reference(backend: gl.GlBackend, data: np.ndarray, mode: str) -> None:
    plane = oblique(samples=15, mode=mode)
    out, ref = backend.render(data, plane, -3000), reference(data, plane, -3000)
    assert np.abs(out - ref).max() <= GREY


def test_slab_mip_finds_the_brightest_sphere(backend: gl.GlBackend, data: np.ndarray) -> None:
    """A thick axial MIP through the whole volume shows every sphere at its full value."""
    spheres, _ = features(SHAPE)
    out = backend.render(data, axial((SHAPE[0] - 1) / 2, samples=SHAPE[0], interpolation="nearest"), -3000)
    assert np.array_equal(out, data.max(axis=0).astype(np.float32))
    for s in spheres:
        assert out[round(s.centre[1]), round(s.centre[0])] == s.value
    minip = backend.render(data, axial((SHAPE[0] - 1) / 2, samples=SHAPE[0], mode="minip", interpolation="nearest"), 0)
    assert np.array_equal(minip, data.min(axis=0).astype(np.float32))
    avg = backend.render(data, axial((SHAPE[0] - 1) / 2, samples=SHAPE[0], mode="avg", interpolation="nearest"), 0)
    assert np.allclose(avg, data.mean(axis=0), atol=1e-3)


@pytest.mark.parametrize("samples", [1, 9])
def test_nearest_is_exact(backend: gl.GlBackend, data: np.ndarray, samples: int) -> None:
    plane = oblique(samples=samples, interpolation="nearest")
    out, ref = backend.render(data, plane, -3000), reference(data, plane, -3000)
    assert np.array_equal(out, ref.astype(np.float32))
    assert set(np.unique(out)) <= set(np.unique(data)) | {-3000}


def test_fill_outside(backend: gl.GlBackend, data: np.ndarray) -> None:
    assert np.all(backend.render(data, axial(-0.6), -1234.5) == -1234.5)
    assert np.all(backend.render(data, axial(SHAPE[0] - 0.99), 7) == 7)
    assert np.array_equal(backend.render(data, axial(SHAPE[0] - 1.0005), 7), data[-1].astype(np.float32))
    # a slab whose centre lies outside still shows the samples that fall inside
    assert np.array_equal(backend.render(data, axial(-1.0, samples=5, interpolation="nearest"), 7),
                          data[:2].max(axis=0).astype(np.float32))
    shifted = Plane(origin=np.array([-10.0, 0, 16]), u=np.array([1.0, 0, 0]), v=np.array([0, 1.0, 0]),
                    width=SHAPE[2], height=SHAPE[1], w=np.zeros(3))
    out = backend.render(data, shifted, -5000)
    assert np.all(out[:, :10] == -5000)
    assert np.array_equal(out[:, 10:], data[16, :, :-10].astype(np.float32))


def test_single_slice_volume(backend: gl.GlBackend, data: np.ndarray) -> None:
    """One image (nz == 1): linear sampling must not read past the only slice."""
    one = data[16:17].copy()
    assert np.array_equal(backend.render(one, axial(0.0), -1), data[16].astype(np.float32))
    assert np.allclose(backend.render(one, axial(0.0, samples=3, mode="avg"), -1), data[16], atol=1e-3)
    assert np.all(backend.render(one, axial(0.01), -1) == -1)


def test_float_volume(backend: gl.GlBackend, data: np.ndarray) -> None:
    values = data.astype(np.float32) * 0.37 + 0.25  # not integers: the R32F path
    for plane in (oblique(), oblique(samples=11, mode="avg"), oblique(samples=7, interpolation="nearest")):
        out, ref = backend.render(values, plane, -1), reference(values, plane, -1)
        assert np.abs(out - ref).max() <= GREY * 0.37


def test_texture_reuse_and_release(backend: gl.GlBackend, data: np.ndarray) -> None:
    backend.render(data, axial(3), 0)
    before = backend.uploads
    backend.render(data, oblique(samples=5), 0)
    backend.render(data, axial(4), 0)
    assert backend.uploads == before  # same array: no second upload
    other = data.copy()
    assert np.array_equal(backend.render(other, axial(5), 0), data[5].astype(np.float32))
    assert backend.uploads == before + 1
    cached = backend.textures
    del other
    gc.collect()
    backend.render(data, axial(6), 0)  # queued after the finaliser's purge
    assert backend.textures == cached - 1
    changed = data.copy()
    backend.render(changed, axial(5), 0)
    changed[5] += 1
    backend.forget(changed)
    assert np.array_equal(backend.render(changed, axial(5), 0), data[5].astype(np.float32) + 1)


def test_bounded_cache() -> None:
    require_gl()
    small = gl.GlBackend(max_textures=2)
    try:
        arrays = [np.full((4, 5, 6), k, dtype=np.int16) for k in range(4)]
        for k, a in enumerate(arrays):
            assert np.all(small.render(a, axial(1), 0)[:5, :6] == k)
        assert small.textures == 2 and small.uploads == 4
        small.render(arrays[0], axial(1), 0)
        assert small.uploads == 5  # evicted earlier, uploaded again
        with pytest.raises(gl.GlUnavailable, match="3D texture limit"):
            small.render(np.zeros((1, 1, small.max_texture_size + 1), np.int16), axial(0), 0)
        with pytest.raises(ValueError):
            small.render(arrays[0], Plane(np.zeros(3), np.ones(3), np.ones(3), 0, 4, np.zeros(3)), 0)
    finally:
        small.close()
    with pytest.raises(gl.GlUnavailable):
        small.render(arrays[0], axial(1), 0)


def test_concurrent_callers(backend: gl.GlBackend, data: np.ndarray) -> None:
    jobs = [(data, oblique(samples=1)), (data, oblique(samples=9, mode="avg")),
            (data[::-1].copy(), oblique(samples=5, mode="minip", angles=(-20.0, 50.0)))]
    expected = [reference(d, p, -3000) for d, p in jobs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for _ in range(4):
            d, p = jobs[k]
            diff = float(np.abs(backend.render(d, p, -3000) - expected[k]).max())
            if diff > GREY:
                errors.append(f"job {k}: {diff}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)


def test_platform_is_headless(backend: gl.GlBackend) -> None:
    assert os.environ["PYOPENGL_PLATFORM"] in ("egl", "osmesa")
    assert backend.description.startswith(("EGL", "OSMesa"))
    assert backend.software == ("llvmpipe" in backend.description)


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is None and not os.environ.get("CI"),
                    reason="libOSMesa is not installed (CI installs it)")
def test_osmesa_fallback(data: np.ndarray, tmp_path: Path) -> None:
    """With PyOpenGL fixed on OSMesa (as where EGL fails), a fresh process renders the same image."""
    np.save(tmp_path / "volume.npy", data)
    script = (
        "import json, sys, numpy as np\n"
        "from hub.render.gl import GlBackend\n"
        "from tests.unit.render.test_gl import oblique, reference\n"
        "d = np.load(sys.argv[1]); p = oblique(samples=7)\n"
        "b = GlBackend()\n"
        "print(json.dumps([b.description, float(np.abs(b.render(d, p, -3000) - reference(d, p, -3000)).max())]))\n"
    )
    env = {**os.environ, "PYOPENGL_PLATFORM": "osmesa", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "volume.npy")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    description, diff = json.loads(run.stdout.strip().splitlines()[-1])
    assert description.startswith("OSMesa") and diff <= GREY
