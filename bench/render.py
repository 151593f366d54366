"""Render service benchmark (issue 8): MPR/MIP on a synthetic 512x512x400 int16 CT volume, p50 per case,
on the CPU backend and (where a GL context can be made) the OpenGL backend, beside VTK 9 and SimpleITK
when they are installed (``.venv/bin/pip install vtk SimpleITK``; not dependencies of the hub), plus the
first axial image of a 400-slice series that is not cached yet, over HTTP (``bench/render_first.py``).

```sh
.venv/bin/python bench/render.py            # prints the tables
.venv/bin/python bench/render.py --write    # and adds them to bench/RESULTS.md
.venv/bin/python bench/render.py --repeat 5 --skip-first   # quick
```
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import harness as h
import numpy as np

sys.path.insert(0, str(h.ROOT))
from hub.render import cpu, gl, window  # noqa: E402
from hub.render.views import ViewRequest, plan  # noqa: E402
from hub.render.volume import Volume  # noqa: E402

MARKER = "## Render service (issue 8)"
INTRO = MARKER + "\n"
OBLIQUE = dict(view="oblique", angles=(20.0, 15.0, 0.0), width=512, height=512)


def synthetic_ct(nz: int, size: int, spacing: tuple[float, float, float]) -> Volume:
    """An elliptic body (soft tissue with noise), two lungs, a spine and a table, varying along z."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    body = (x / 0.42) ** 2 + (y / 0.32) ** 2 <= 1
    lungs = ((np.abs(x) - 0.18) / 0.13) ** 2 + (y / 0.2) ** 2 <= 1
    spine = (x / 0.04) ** 2 + ((y - 0.22) / 0.05) ** 2 <= 1
    table = (np.abs(y - 0.4) < 0.01) & (np.abs(x) < 0.45)
    base = np.full((size, size), -1000, np.int16)
    base[body] = 40
    base[body & lungs] = -850
    base[spine] = 700
    base[table] = 200
    data = np.empty((nz, size, size), np.int16)
    rng = np.random.default_rng(3)
    noise = rng.integers(-15, 16, size=(16, size, size), dtype=np.int16)
    for k in range(nz):
        data[k] = base + noise[k % 16]
        r = size * (0.03 + 0.02 * math.sin(k / 30))  # a vessel wandering along z, contrast-filled
        cx, cy = size * (0.5 + 0.1 * math.cos(k / 50)), size * 0.45
        yy, xx = np.ogrid[0:size, 0:size]
        data[k][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 350
    return Volume(data=data, origin=np.zeros(3), row_dir=np.array([1.0, 0, 0]), col_dir=np.array([0, 1.0, 0]),
                  normal=np.array([0, 0, 1.0]), spacing=np.array(spacing), window=(40.0, 400.0))


def p50(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall, CPU time of this process) p50 in ms. On a loaded machine the CPU time (all threads) shows
    the work itself: a two-thread case would take about half of it on two idle cores."""
    fn()
    wall, cpu_time = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu_time.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu_time) * 1e3


def cases(centre_z: float) -> list[tuple[str, dict[str, object], bool, float | None]]:
    """(name, view request, timed with window + JPEG, target ms)."""
    return [
        ("axial slice + window + JPEG", dict(view="axial", position=centre_z), True, 3.0),
        ("axial 20 mm slab MIP + JPEG", dict(view="axial", position=centre_z, thickness=20), True, 5.0),
        ("full-volume axial MIP", dict(view="axial", thickness=math.inf), False, 15.0),
        ("sagittal 20 mm slab MIP + JPEG", dict(view="sagittal", thickness=20), True, 5.0),
        ("oblique 512x512 MPR, linear", dict(OBLIQUE), False, 12.0),
        ("oblique 20 mm slab MIP, linear", dict(OBLIQUE, thickness=20), False, 130.0),
        ("oblique 20 mm slab MIP, nearest (quality=fast)", dict(OBLIQUE, thickness=20, interpolation="nearest"),
         False, 50.0),
        ("rotating MIP frame, 256x256, azimuth 30", dict(view="projection", azimuth=30, width=256, height=256),
         False, None),
    ]


def measure(vol: object, backend: object, repeat: int, centre_z: float) -> dict[str, float]:
    out = {}
    for name, req, encode, _ in cases(centre_z):
        p = plan(vol, ViewRequest(**req)).plane  # type: ignore[arg-type]

        def run(p: object = p, encode: bool = encode) -> object:
            values = backend.render(vol.data, p, -1000.0)  # type: ignore[attr-defined]
            return window.encode(window.apply(values, 40, 400), "jpeg") if encode else values

        reps = repeat if p.samples < 30 else max(5, repeat // 3)  # type: ignore[attr-defined]
        out[name] = p50(run, reps)[0]
    return out


def floor_ms(vol: object, repeat: int) -> float:
    """The memory floor of a full-volume pass: a max-only read of all voxels on two threads."""
    data = vol.data  # type: ignore[attr-defined]
    halves = [data[: len(data) // 2], data[len(data) // 2:]]
    with ThreadPoolExecutor(2) as pool:
        return p50(lambda: list(pool.map(lambda a: a.max(), halves)), repeat)[0]


def others(vol: object, repeat: int) -> dict[str, tuple[str, float]]:
    """VTK 9 vtkImageReslice (oblique MPR; oblique 20 mm MIP slab) and SimpleITK MaximumProjection."""
    out: dict[str, tuple[str, float]] = {}
    data = vol.data  # type: ignore[attr-defined]
    sx, sy, sz = (float(s) for s in vol.spacing)  # type: ignore[attr-defined]
    try:
        import vtk
        from vtk.util import numpy_support

        image = vtk.vtkImageData()
        image.SetDimensions(data.shape[2], data.shape[1], data.shape[0])
        image.SetSpacing(sx, sy, sz)
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(data.reshape(-1), deep=False,
                                                                   array_type=vtk.VTK_SHORT))
        rot = vtk.vtkTransform()
        rot.RotateX(20)
        rot.RotateY(15)
        centre = [data.shape[2] * sx / 2, data.shape[1] * sy / 2, data.shape[0] * sz / 2]
        axes = vtk.vtkMatrix4x4()
        m = rot.GetMatrix()
        for i in range(3):
            for j in range(3):
                axes.SetElement(i, j, m.GetElement(i, j))
            axes.SetElement(i, 3, centre[i])
        version = vtk.vtkVersion.GetVTKVersion()
        for name, slab in (("oblique 512x512 MPR, linear", 1), ("oblique 20 mm slab MIP, linear", 29)):
            reslice = vtk.vtkImageReslice()
            reslice.SetInputData(image)
            reslice.SetOutputDimensionality(2)
            reslice.SetResliceAxes(axes)
            reslice.SetInterpolationModeToLinear()
            reslice.SetOutputSpacing(sx, sy, sz)
            reslice.SetOutputExtent(-256, 255, -256, 255, 0, 0)
            if slab > 1:
                reslice.SetSlabModeToMax()
                reslice.SetSlabNumberOfSlices(slab)
                reslice.SetSlabSliceSpacingFraction(0.7 / sz)

            def run(reslice: object = reslice) -> None:
                reslice.Modified()  # type: ignore[attr-defined]
                reslice.Update()  # type: ignore[attr-defined]

            out[name] = (f"VTK {version}", p50(run, max(3, repeat // 3))[0])
    except ImportError:
        h.log("VTK not installed: no VTK column")
    try:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(data)
        img.SetSpacing((sx, sy, sz))
        out["full-volume axial MIP"] = (f"SimpleITK {sitk.Version.VersionString()}",
                                        p50(lambda: sitk.MaximumProjection(img, 2), max(3, repeat // 3))[0])
    except ImportError:
        h.log("SimpleITK not installed: no SimpleITK column")
    return out


def table(vol: object, repeat: int, centre_z: float, use_gl: bool) -> str:
    t0 = time.perf_counter()
    cpu.warm()
    h.log(f"numba kernels ready in {time.perf_counter() - t0:.1f} s")
    results = {"CPU (numpy + numba)": measure(vol, cpu.CpuBackend(), repeat, centre_z)}
    if use_gl and gl.available():
        backend = gl.GlBackend()
        t0 = time.perf_counter()
        backend.render(vol.data, plan(vol, ViewRequest(view="axial")).plane, -1000.0)  # type: ignore[arg-type]
        h.log(f"GL texture upload {time.perf_counter() - t0:.2f} s on {backend.description}")
        results[f"OpenGL ({'software' if backend.software else 'GPU'})"] = measure(vol, backend, repeat, centre_z)
        backend.close()
    elif use_gl:
        h.log(f"no GL context: {gl.unavailable_reason()}")
    ref = others(vol, repeat)
    floor = floor_ms(vol, repeat)
    names = list(results)
    lines = ["| case | target ms | " + " | ".join(f"{n} p50 ms" for n in names) + " | reference p50 ms |",
             "|---|---:|" + "---:|" * len(names) + "---|"]
    for name, _, _, target in cases(centre_z):
        cells = [f"{results[n][name]:.1f}" for n in names]
        other = ref.get(name)
        extra = f"{other[0]}: {other[1]:.1f}" if other else ""
        if name == "full-volume axial MIP":
            extra = (extra + "; " if extra else "") + f"memory floor (2-thread read): {floor:.1f}"
        lines.append(f"| {name} | {'' if target is None else f'{target:g}'} | {' | '.join(cells)} | {extra} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--spacing", default="0.7,0.7,0.7", help="sx,sy,sz in mm (the volume of the kernel table)")
    ap.add_argument("--skip-gl", action="store_true")
    ap.add_argument("--skip-first", action="store_true", help="skip the first-image-over-HTTP measurement")
    ap.add_argument("--write", action="store_true", help="add the results to bench/RESULTS.md")
    args = ap.parse_args()
    spacing = tuple(float(s) for s in args.spacing.split(","))
    vol = synthetic_ct(args.slices, 512, spacing)  # type: ignore[arg-type]
    centre_z = (args.slices // 2) * spacing[2]
    kernels = table(vol, args.repeat, centre_z, not args.skip_gl)
    info = h.machine(None, None)
    text = (f"### {info['date']}: {args.slices} slices 512x512 int16, spacing {args.spacing} mm\n\n"
            f"{h.machine_line(info)}, load average {os.getloadavg()[0]:.1f} at the end\n\n{kernels}\n")
    if not args.skip_first:
        import render_first

        first = render_first.first_slice(args.slices)
        text += (f"\nFirst axial image of a {first['slices']:.0f}-slice 512x512 series not in the cache, over HTTP "
                 f"(SQLite, C-STORE first): p50 {first['first_p50_ms']:.0f} ms, max {first['first_max_ms']:.0f} ms "
                 f"(target 300 ms); the whole volume loaded after {first['complete_p50_s']:.2f} s (p50).\n")
    h.publish(text, args.write, MARKER, INTRO)


if __name__ == "__main__":
    main()
