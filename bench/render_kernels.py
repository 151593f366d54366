"""Render kernel benchmark: the CPU backend on a synthetic 512x512x400 int16 CT volume, p50 over repeats.

Cases (targets for a 2-core machine): axial slice + window + JPEG (3 ms); 20 mm axial slab MIP + JPEG
(5 ms); full-volume axial MIP (15 ms), next to the memory floor (one read of the whole volume: a
max-only reduction on 1 and 2 threads); 20 mm sagittal slab (as fast as the axial one); oblique MPR
(linear, 12 ms); 20 mm oblique slab MIP (linear 130 ms, nearest 50 ms). The render column is the backend
alone, the total adds window/level and encoding. The default voxels are isotropic (0.7 mm) so that the
sagittal slab lies on the voxel grid; ``--spacing 0.7,0.7,1`` shows the interpolated case.

Usage: ``.venv/bin/python bench/render_kernels.py [--repeat 20] [--slices 400] [--spacing 0.7,0.7,0.7]
[--format jpeg]``
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.render import cpu, window  # noqa: E402
from hub.render.views import ViewRequest, plan  # noqa: E402
from hub.render.volume import Volume  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--spacing", default="0.7,0.7,0.7", help="sx,sy,sz in mm")
    ap.add_argument("--format", default="jpeg", choices=sorted(window.FORMATS))
    args = ap.parse_args()
    spacing = tuple(float(s) for s in args.spacing.split(","))
    t0 = time.perf_counter()
    cpu.warm()
    warm_s = time.perf_counter() - t0
    vol = synthetic_ct(args.slices, args.size, spacing)  # type: ignore[arg-type]
    backend = cpu.CpuBackend()
    fill = -1000.0
    centre_z = (args.slices // 2) * spacing[2]

    def case(**req: object) -> tuple[Callable[[], object], Callable[[], object], str]:
        view = plan(vol, ViewRequest(**req))  # type: ignore[arg-type]
        p = view.plane

        def render() -> np.ndarray:
            return backend.render(vol.data, p, fill)

        def total() -> bytes:
            return window.encode(window.apply(render(), 40, 400), args.format)

        return render, total, f"{p.width}x{p.height}x{p.samples}"

    pool = ThreadPoolExecutor(2)
    halves = [vol.data[: args.slices // 2], vol.data[args.slices // 2:]]

    def floor2() -> None:
        list(pool.map(lambda a: a.max(), halves))

    oblique = dict(view="oblique", angles=(20.0, 15.0, 0.0), width=512, height=512)
    rows: list[tuple[str, str, float, float, float | None, float | None, str]] = []
    plans = [
        ("axial slice + window + encode", dict(view="axial", position=centre_z), "total", 3.0),
        ("axial 20 mm slab MIP + encode", dict(view="axial", position=centre_z, thickness=20), "total", 5.0),
        ("full-volume axial MIP", dict(view="axial", thickness=math.inf), "render", 15.0),
        ("sagittal 20 mm slab MIP + encode", dict(view="sagittal", thickness=20), "total", 5.0),
        ("coronal 20 mm slab MIP + encode", dict(view="coronal", thickness=20), "total", 5.0),
        ("oblique MPR, linear", dict(oblique), "render", 12.0),
        ("oblique 20 mm slab MIP, linear", dict(oblique, thickness=20), "render", 130.0),
        ("oblique 20 mm slab MIP, nearest", dict(oblique, thickness=20, interpolation="nearest"), "render", 50.0),
        ("rotating MIP frame (projection, az 30)", dict(view="projection", azimuth=30, width=256, height=256),
         "render", None),
    ]
    for name, req, target_on, target in plans:
        render, total, size = case(**req)
        reps = args.repeat if "oblique" not in name and "projection" not in name.lower() else max(5, args.repeat // 3)
        (r_ms, r_cpu), (t_ms, _) = p50(render, reps), p50(total, reps)
        measured = t_ms if target_on == "total" else r_ms
        verdict = "" if target is None else ("ok" if measured <= target else "MISSED")
        rows.append((name, size, r_ms, r_cpu, t_ms, target, verdict))
    for name, fn in (("memory floor: max-only read, 2 threads", floor2),
                     ("memory floor: max-only read, 1 thread", lambda: vol.data.max())):
        wall, cpu_ms = p50(fn, args.repeat)
        rows.append((name, f"{vol.nbytes >> 20} MiB", wall, cpu_ms, None, None, ""))
    pool.shutdown()

    print(f"\nCPU backend, {args.size}x{args.size}x{args.slices} int16, spacing {args.spacing} mm, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"format {args.format}, numba warm {warm_s:.1f} s\n")
    print("| case | output (w x h x samples) | render p50 ms | render CPU ms | + window + encode p50 ms "
          "| target ms | |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, size, r_ms, r_cpu, t_ms, target, verdict in rows:
        cells = [f"{x:.1f}" if isinstance(x, float) else "" for x in (r_ms, r_cpu, t_ms, target)]
        print(f"| {name} | {size} | {' | '.join(cells)} | {verdict} |")


if __name__ == "__main__":
    main()
