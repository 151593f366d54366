"""Ingest benchmark: C-STORE (dcmtk ``storescu``, one association) and ``rishub import`` throughput.

Generates (once, cached in the temp dir) a synthetic N-slice 512x512 int16 CT series with correct
geometry, then measures, each run on a fresh data dir / fresh database so nothing is a duplicate:

* ``storescu`` -> ``rishub serve`` on SQLite and on PostgreSQL;
* ``rishub import`` of the same files on SQLite and on PostgreSQL;
* ``storescu`` -> Orthanc (when ``/usr/sbin/Orthanc`` is installed), as the reference.

Prints a markdown table; ``--write`` adds a dated section to ``bench/RESULTS.md``.
Usage: ``.venv/bin/python bench/ingest.py [--slices 300] [--repeat 3] [--skip-pg] [--skip-orthanc] [--write]``
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import (
    ADMIN_PASSWORD,
    HUB_OVERRIDES,
    RESULTS,
    RISHUB,
    STORESCU,
    add_common_args,
    apply_hub_env,
    find_orthanc,
    hub_config,
    hub_env,
    instance_count,
    log,
    machine,
    machine_line,
    open_postgres,
    orthanc_server,
    rishub_server,
    run_storescu,
    series,
    write_results,
)

MARKER = "<!-- results: newest first; `bench/ingest.py --write` inserts a section below -->"
ORTHANC_REFERENCE = (137.0, 72.0)  # instances/s, MB/s: Orthanc 1.10 (Debian) on this 2-core machine


@dataclass
class Measurement:
    """Median of one target/method over the repeats."""

    target: str
    method: str
    walls: list[float] = field(default_factory=list)
    instances: int = 0
    nbytes: int = 0

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def ips(self) -> float:
        return self.instances / self.wall

    @property
    def mbps(self) -> float:
        return self.nbytes / self.wall / 1e6


# --------------------------------------------------------------------------- rishub


def bench_hub_store(files: list[Path], database_url: str | None, timeout: float) -> float:
    """One ``storescu`` run against a fresh ``rishub serve``; returns the wall time."""
    with tempfile.TemporaryDirectory(prefix="rishub-bench-") as tmp:
        work = Path(tmp)
        with hub_config(work, database_url) as (cfg, http_port, dicom_port), rishub_server(cfg, http_port, work):
            wall = run_storescu("RISHUB", dicom_port, files, timeout)
            stored = instance_count(http_port, ("admin", ADMIN_PASSWORD))
        if stored != len(files):
            raise RuntimeError(f"rishub stored {stored} of {len(files)} instances")
        return wall


def bench_hub_import(files: list[Path], database_url: str | None, timeout: float) -> tuple[float, float]:
    """One ``rishub import`` into a fresh index; returns (process wall time, the CLI's own seconds)."""
    with tempfile.TemporaryDirectory(prefix="rishub-bench-") as tmp:
        work = Path(tmp)
        with hub_config(work, database_url) as (cfg, _, _):
            cmd = [str(RISHUB), "import", str(files[0].parent), "--config", str(cfg), "--no-progress"]
            started = time.perf_counter()
            proc = subprocess.run(cmd, env=hub_env(), capture_output=True, timeout=timeout, check=False, cwd=work)
            wall = time.perf_counter() - started
        out = proc.stdout.decode(errors="replace").strip()
        m = re.search(r"stored (\d+), duplicates \d+, rejected \d+, failed \d+ .* in ([\d.]+) s\)", out)
        if proc.returncode != 0 or not m or int(m.group(1)) != len(files):
            raise RuntimeError(f"rishub import failed (rc={proc.returncode}): {out}\n{proc.stderr.decode()[-2000:]}")
        log(f"  {out}")
        return wall, float(m.group(2))


# --------------------------------------------------------------------------- Orthanc


def bench_orthanc(files: list[Path], timeout: float) -> float:
    """One ``storescu`` run against a fresh Orthanc (default settings, no plugins)."""
    with tempfile.TemporaryDirectory(prefix="orthanc-bench-") as tmp:
        with orthanc_server(Path(tmp)) as (http_port, dicom_port):
            wall = run_storescu("ORTHANC", dicom_port, files, timeout)
            stored = instance_count(http_port, None)
        if stored != len(files):
            raise RuntimeError(f"Orthanc stored {stored} of {len(files)} instances")
        return wall


# --------------------------------------------------------------------------- report


def table(rows: list[Measurement]) -> str:
    """The markdown table of the medians."""
    ref = next((r.ips for r in rows if r.target.startswith("Orthanc")), None)
    out = [
        "| target | method | instances | MB | s (median) | instances/s | MB/s | >= 137/s | vs Orthanc | runs (s) |",
        "|---|---|---:|---:|---:|---:|---:|:---:|---:|---|",
    ]
    for r in rows:
        ok = "yes" if r.ips >= ORTHANC_REFERENCE[0] else "**no**"
        vs = f"{r.ips / ref:.2f}x" if ref else "-"
        runs = ", ".join(f"{w:.2f}" for w in r.walls)
        out.append(
            f"| {r.target} | {r.method} | {r.instances} | {r.nbytes / 1e6:.1f} | {r.wall:.2f} | "
            f"{r.ips:.1f} | {r.mbps:.1f} | {ok} | {vs} | {runs} |"
        )
    return "\n".join(out)


def section(
    rows: list[Measurement], info: dict[str, str], args: argparse.Namespace, skipped: list[str], errors: list[str]
) -> str:
    """One dated section of RESULTS.md (and of the console output)."""
    lines = [f"## {info['date']}", ""]
    lines.append(
        f"Series: {args.slices} slices, 512x512 int16 CT, Explicit VR Little Endian; "
        f"median of {args.repeat} run(s), each on a fresh data dir / database."
    )
    lines.append("")
    lines.append(table(rows))
    lines.append("")
    if HUB_OVERRIDES:
        changed = ", ".join(f"`{k}={v}`" for k, v in HUB_OVERRIDES.items())
        lines += [f"Hub settings changed from the defaults: {changed}", ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    if errors:
        lines += ["Failed: " + "; ".join(errors), ""]
    lines.append(machine_line(info))
    lines.append("")
    return "\n".join(lines)


INTRO = f"""# Ingest benchmark

`bench/ingest.py` generates a synthetic 300-slice 512x512 int16 CT series with `tests/synthetic.py`
(correct geometry tags; deterministic; cached in the temp dir as `rishub-bench-ct-<N>/`, delete it
to regenerate) and measures, each run on a fresh data dir and
a fresh database so nothing is a duplicate:

* **C-STORE**: dcmtk `storescu` sends the whole series over **one association** to `rishub serve`
  (AE `RISHUB`); wall time of the `storescu` process (it includes storescu reading the files).
* **import**: `rishub import DIR --no-progress` (default workers: 2 x CPUs). Two rows from the same
  runs: *(process)* is the wall time of the whole command, including interpreter start-up and
  opening the index (about 0.6 s here); *(its own timer)* is the time the CLI prints in its summary (walk +
  store, 0.1 s resolution).
* **Orthanc** (when `/usr/sbin/Orthanc` is installed): the same `storescu` run against Orthanc with
  default settings and no plugins, in the same run, as the reference.

Each on the embedded SQLite index and on PostgreSQL (a throw-away database on
`--pg-url`, default `postgresql://postgres@127.0.0.1:5432/postgres`, created, upgraded with
`rishub db upgrade` and dropped per run). The hub runs with its defaults, which include
`[storage] fsync = true` (blob + directory fsync before answering) and `log_level = "INFO"`.
dcmtk clients run with `TCP_NODELAY=1` in the environment.

Target: at least what Orthanc 1.10 (Debian package) does on the same 2-core machine,
**{ORTHANC_REFERENCE[0]:.0f} instances/s ({ORTHANC_REFERENCE[1]:.0f} MB/s) over one association**, on SQLite and on
PostgreSQL. MB = 10^6 bytes of DICOM files.

## How to run

```sh
make bench                                   # = .venv/bin/python bench/ingest.py
.venv/bin/python bench/ingest.py --write     # also add a dated section to this file
.venv/bin/python bench/ingest.py --slices 100 --repeat 1 --skip-pg --skip-orthanc   # quick
```

Options: `--slices N` (300), `--repeat N` (3; the median is reported), `--skip-pg`,
`--skip-orthanc`, `--skip-import`, `--pg-url URL`, `--timeout S` (per step, 600), `--write`,
`--hub-env RISHUB_KEY=VALUE` (repeatable; a diagnostic run with a hub setting changed, e.g.
`RISHUB_STORAGE_FSYNC=false`; the section then says so).

{MARKER}
"""


# --------------------------------------------------------------------------- main


Run = Callable[[], dict[str, float]]  # one run: seconds per method (storescu, import, ...)


def measure(rows: list[Measurement], errors: list[str], target: str, files: list[Path], nbytes: int, repeat: int,
            fn: Run) -> None:
    """Run ``fn`` ``repeat`` times and append one row per method it times; a failure is reported, not fatal."""
    found: dict[str, Measurement] = {}
    for i in range(repeat):
        try:
            walls = fn()
        except Exception as exc:  # noqa: BLE001 - reported in the output; the other targets still run
            log(f"{target} run {i + 1}/{repeat} FAILED: {type(exc).__name__}: {exc}")
            errors.append(f"{target}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        for method, wall in walls.items():
            m = found.setdefault(method, Measurement(target, method, instances=len(files), nbytes=nbytes))
            m.walls.append(wall)
            log(f"{target} / {method} run {i + 1}/{repeat}: {wall:.2f} s = {len(files) / wall:.1f} instances/s")
    rows.extend(found.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=300, help="slices of the synthetic CT series (300)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported (3)")
    p.add_argument("--skip-import", action="store_true", help="no `rishub import` runs")
    add_common_args(p, "limit of each storescu/import step in seconds")
    args = p.parse_args(argv)
    apply_hub_env(p, args.hub_env)
    if args.slices < 1 or args.repeat < 1:
        p.error("--slices and --repeat must be at least 1")
    if not STORESCU.exists():
        p.error(f"{STORESCU} not found: install dcmtk")

    files = series(args.slices)
    nbytes = sum(f.stat().st_size for f in files)
    log(f"series: {len(files)} files, {nbytes / 1e6:.1f} MB")

    skipped: list[str] = []
    pg, pg_version = open_postgres(args.pg_url, args.skip_pg, skipped)
    orthanc = find_orthanc(args.skip_orthanc, skipped)

    rows: list[Measurement] = []
    errors: list[str] = []
    Db = Callable[[], contextlib.AbstractContextManager[str | None]]
    backends: list[tuple[str, Db]] = [("rishub SQLite", lambda: contextlib.nullcontext(None))]
    if pg is not None:
        backends.append(("rishub PostgreSQL", pg.database))
    t = args.timeout

    def store_run(db: Db) -> Run:
        def run() -> dict[str, float]:
            with db() as url:
                return {"storescu C-STORE": bench_hub_store(files, url, t)}
        return run

    def import_run(db: Db) -> Run:
        def run() -> dict[str, float]:
            with db() as url:
                wall, own = bench_hub_import(files, url, t)
            walls = {"rishub import (process)": wall}
            if own > 0:  # the CLI prints 0.1 s resolution: nothing to report for a tiny series
                walls["rishub import (its own timer)"] = own
            return walls
        return run

    if orthanc:
        measure(rows, errors, f"Orthanc {orthanc}", files, nbytes, args.repeat,
                lambda: {"storescu C-STORE": bench_orthanc(files, t)})
    for name, db in backends:
        measure(rows, errors, name, files, nbytes, args.repeat, store_run(db))
        if not args.skip_import:
            measure(rows, errors, name, files, nbytes, args.repeat, import_run(db))

    info = machine(pg_version, orthanc)
    text = section(rows, info, args, skipped, errors)
    print(text)
    if args.write:
        write_results(text, MARKER, INTRO)
        log(f"wrote {RESULTS}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
