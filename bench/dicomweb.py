"""DICOMweb benchmark: series metadata, QIDO at 10,000 studies, frame retrieval, STOW; beside Orthanc
1.10 with its DICOMweb plugin (Debian ``orthanc-dicomweb``) in the same run.

Each target gets, over C-STORE (dcmtk ``storescu``): the synthetic archive of ``bench/study_archive.py``
(default 10,000 studies) and the 300-slice CT series of the ingest benchmark. Then, on one keep-alive
connection:

* WADO-RS metadata of the 300-instance series (``application/dicom+json``), p50/p95 of ``--repeat``;
* QIDO-RS ``/studies?PatientName=SMI*`` and ``/studies?StudyDate=<one month>``, p50/p95;
* WADO-RS ``/frames/1`` of each of the 300 instances in turn, as OHIF asks for them
  (``multipart/related; type=application/octet-stream; transfer-syntax=*``): frames/s;
* STOW-RS of 50 new CT slices in one ``multipart/related`` request: instances/s (median of 5 after one warm-up
  request, new UIDs each run).

Targets (PS3.18 figures measured here with Orthanc: series metadata 385 ms, QIDO date range 79 ms,
STOW 404 instances/s): metadata at least 10x faster than Orthanc, the other figures at least Orthanc's.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness as h
from http_client import Client
from query import p
from study_archive import Plan, generate, plan, query_plan

sys.path.insert(0, str(h.ROOT))

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
MARKER = "<!-- dicomweb results: newest first; `bench/dicomweb.py --write` inserts a section below -->"
INTRO = f"""# DICOMweb benchmark

`bench/dicomweb.py`: WADO-RS series metadata of a 300-instance CT series, QIDO-RS at 10,000 studies,
WADO-RS frame retrieval (one frame per request, OHIF's Accept header) and STOW-RS of 50 instances, on
the hub (SQLite, PostgreSQL) and on Orthanc 1.10 + its DICOMweb plugin in the same run. Targets: metadata
at least 10x faster than Orthanc, every other figure at least Orthanc's.

```sh
.venv/bin/python bench/dicomweb.py --write
.venv/bin/python bench/dicomweb.py --studies 1000 --repeat 5 --skip-pg   # quick
```

{MARKER}
"""


@dataclass
class Row:
    target: str
    what: str
    value: float
    unit: str
    p95: float | None = None
    note: str = ""


def _series_uids(files: list[Path]) -> tuple[str, str, list[str]]:
    import pydicom

    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    sops = [str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            for f in files]
    return str(first.StudyInstanceUID), str(first.SeriesInstanceUID), sops


def _stow_body(n: int, work: Path, run: int) -> tuple[bytes, str]:
    from tests.synthetic import write_series

    files = write_series(work / f"stow{run}", n, seed=f"stow-{uuid.uuid4().hex[:8]}")
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes() + b"\r\n"
             for f in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), boundary


def measure(name: str, port: int, auth: tuple[str, str] | None, prefix: str, pl: Plan, series_files: list[Path],
            work: Path, args: argparse.Namespace) -> list[Row]:
    c = Client(port, auth)
    study, series, sops = _series_uids(series_files)
    rows: list[Row] = []

    def timed(fn: Callable[[], None], reps: int) -> list[float]:
        fn()  # warm-up
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1000)
        return out

    def metadata() -> None:
        status, _, body = c.raw("GET", f"{prefix}/studies/{study}/series/{series}/metadata",
                                headers={"Accept": "application/dicom+json"})
        if status != 200 or body.count(b'"00080018"') != len(sops):
            raise RuntimeError(f"{name}: series metadata HTTP {status}, {body.count(b'00080018')} instances")

    t = timed(metadata, args.repeat)
    rows.append(Row(name, "WADO-RS series metadata (300 instances)", p(t, 0.5), "ms", p(t, 0.95)))
    qp = query_plan(pl, args.repeat + 1, args.seed)
    for label, keys in (("QIDO /studies?PatientName=SMI*", [qp["PatientName SMI*"][0]]),
                        ("QIDO /studies?StudyDate=one month", qp["StudyDate one month"])):
        it = itertools.cycle(keys)

        def qido(it=it, label=label) -> None:  # noqa: ANN001
            query, expected = next(it)
            qs = "&".join(f"{k}={v}" for k, v in query.items())
            status, _, body = c.raw("GET", f"{prefix}/studies?{qs}", headers={"Accept": "application/dicom+json"})
            found = body.count(b'"0020000D"')
            if status not in (200, 204) or found != expected:
                raise RuntimeError(f"{name}: {label}: HTTP {status}, {found} studies, expected {expected}")

        t = timed(qido, args.repeat)
        rows.append(Row(name, label, p(t, 0.5), "ms", p(t, 0.95)))
    t0 = time.perf_counter()
    for sop in sops:
        status, _, body = c.raw("GET", f"{prefix}/studies/{study}/series/{series}/instances/{sop}/frames/1",
                                headers={"Accept": FRAME_ACCEPT})
        if status != 200 or len(body) < 512 * 512 * 2:
            raise RuntimeError(f"{name}: frame of {sop}: HTTP {status}, {len(body)} bytes")
    wall = time.perf_counter() - t0
    rows.append(Row(name, "WADO-RS frames, one per request", len(sops) / wall, "frames/s",
                    note=f"{len(sops)} frames in {wall:.2f} s"))
    stow = []
    for run in range(args.stow_runs + 1):  # run 0 warms up (connections, the hub's parse workers)
        body, boundary = _stow_body(args.stow, work, run)
        t0 = time.perf_counter()
        status, _, answer = c.raw("POST", f"{prefix}/studies", body, {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json"})
        if run:
            stow.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"{name}: STOW HTTP {status}: {answer[:200]!r}")
    s = statistics.median(stow)
    rows.append(Row(name, f"STOW-RS {args.stow} instances, one request", args.stow / s, "instances/s",
                    note="runs " + ", ".join(f"{x:.2f} s" for x in stow)))
    h.log(f"{name}: " + "; ".join(f"{r.what} {r.value:.1f} {r.unit}" for r in rows))
    return rows


def _store_all(name: str, aet: str, dicom_port: int, files: list[Path], series: list[Path], timeout: float) -> None:
    t = h.run_storescu(aet, dicom_port, files + series, timeout)
    h.log(f"{name}: stored {len(files) + len(series)} files in {t:.1f} s")


def run_hub(name: str, db: Callable[[], contextlib.AbstractContextManager[str | None]], files: list[Path],
            series: list[Path], pl: Plan, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="rishub-bench-dw-") as tmp, db() as url:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http_port, dicom_port), h.rishub_server(cfg, http_port, work):
            _store_all(name, "RISHUB", dicom_port, files, series, args.timeout)
            return measure(name, http_port, ("admin", h.ADMIN_PASSWORD), "/dicom-web", pl, series, work, args)


def run_orthanc(name: str, files: list[Path], series: list[Path], pl: Plan, args: argparse.Namespace) -> list[Row]:
    extra = {"Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    with tempfile.TemporaryDirectory(prefix="rishub-bench-dw-orthanc-") as tmp:
        work = Path(tmp)
        with h.orthanc_server(work, extra) as (http_port, dicom_port):
            _store_all(name, "ORTHANC", dicom_port, files, series, args.timeout)
            return measure(name, http_port, None, "/dicom-web", pl, series, work, args)


def section(rows: list[Row], pl: Plan, info: dict[str, str], args: argparse.Namespace, skipped: list[str],
            errors: list[str]) -> str:
    lines = [f"## DICOMweb {info['date']}", "",
             f"Archive: {len(pl.studies)} studies (bench/study_archive.py, seed {args.seed}) + the 300-slice "
             f"512x512 CT series; {args.repeat} repetitions per latency after a warm-up; one keep-alive "
             "connection; Basic auth on the hub, none on Orthanc.", "",
             "| target | measure | value | unit | p95 | vs Orthanc | note |", "|---|---|---:|---|---:|---:|---|"]
    ref = {r.what: r.value for r in rows if r.target.startswith("Orthanc")}
    for r in rows:
        vs = ""
        if r.what in ref and ref[r.what]:
            factor = ref[r.what] / r.value if r.unit == "ms" else r.value / ref[r.what]
            vs = f"{factor:.1f}x"
        p95 = f"{r.p95:.1f}" if r.p95 is not None else ""
        lines.append(f"| {r.target} | {r.what} | {r.value:.1f} | {r.unit} | {p95} | {vs} | {r.note} |")
    lines += ["", "*vs Orthanc*: how many times better than Orthanc (faster or more per second)."]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    if errors:
        lines += ["", "Errors: " + "; ".join(errors)]
    lines += ["", h.machine_line(info)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=10_000, help="studies in the archive (10000)")
    ap.add_argument("--repeat", type=int, default=20, help="repetitions per latency (20)")
    ap.add_argument("--slices", type=int, default=300, help="slices of the CT series (300)")
    ap.add_argument("--stow", type=int, default=50, help="instances per STOW request (50)")
    ap.add_argument("--stow-runs", type=int, default=5, help="timed STOW requests after one warm-up (5)")
    ap.add_argument("--seed", type=int, default=20261122, help="seed of the synthetic archive")
    h.add_common_args(ap, "limit of each storescu run in seconds")
    args = ap.parse_args(argv)
    h.apply_hub_env(ap, args.hub_env)
    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    orthanc = h.find_orthanc(args.skip_orthanc, skipped)
    if orthanc and not DICOMWEB_PLUGIN.exists():
        skipped.append(f"Orthanc (no DICOMweb plugin at {DICOMWEB_PLUGIN}: apt-get install orthanc-dicomweb)")
        orthanc = None
    pl = plan(args.studies, args.seed)
    files = generate(pl, args.seed)
    series = h.series(args.slices)
    rows: list[Row] = []
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], list[Row]]) -> None:
        try:
            rows.extend(fn())
        except (RuntimeError, OSError, subprocess.SubprocessError, TimeoutError) as exc:
            h.log(f"{what} FAILED: {exc}")
            errors.append(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    if orthanc:
        attempt(f"Orthanc {orthanc}", lambda: run_orthanc(f"Orthanc {orthanc} + DICOMweb", files, series, pl, args))
    attempt("rishub SQLite", lambda: run_hub("rishub SQLite", lambda: contextlib.nullcontext(None), files, series,
                                             pl, args))
    if pg is not None:
        attempt("rishub PostgreSQL", lambda: run_hub("rishub PostgreSQL", pg.database, files, series, pl, args))
    text = section(rows, pl, h.machine(pg_version, orthanc), args, skipped, errors)
    h.publish(text, args.write, MARKER, INTRO)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
