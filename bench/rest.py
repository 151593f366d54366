"""REST API benchmark: Orthanc-style ``/tools/find`` latency and ``/studies?expand`` paging, beside Orthanc.

The same deterministic archive is stored in each target: 10,000 studies of ~4,000 patients, one small
instance (no pixel data) per series, 1-3 series per study (``--studies``). Files are generated once and
cached in the temp dir; each target gets them over C-STORE with dcmtk ``storescu`` (one association), so
the hub indexes them through its ordinary ingest path.

* ``/tools/find`` at study level, ids only (``Expand: false``), on one keep-alive connection: exact
  PatientID, PatientName ``SMI*``, StudyDate one month, ModalitiesInStudy ``CT``; p50/p95 of
  ``--repeat`` runs each (the four interleaved, after one warm-up round). Target: p50 < 20 ms.
* ``GET /studies?expand&since=N&limit=100`` walked over the whole archive: total seconds and p50 per page.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness as h
from http_client import Client
from query import p
from study_archive import QUERIES, Plan, generate, plan, query_plan

MARKER = "<!-- rest results: newest first; `bench/rest.py --write` inserts a section below -->"
INTRO = f"""# REST API benchmark

`bench/rest.py` stores the same synthetic archive (default 10,000 studies of ~4,000 patients, one small
instance per series, 1-3 series per study; generated once, deterministic) into each target over C-STORE
(dcmtk `storescu`), then measures Orthanc-style `POST /tools/find` at study level (ids only; p50/p95 on one
keep-alive connection; target p50 < 20 ms) and a walk over `GET /studies?expand&since=N&limit=100`.
Orthanc 1.10 (Debian package, default settings, SQLite index) runs beside the hub in the same run.

```sh
.venv/bin/python bench/rest.py --write
.venv/bin/python bench/rest.py --studies 1000 --repeat 10 --skip-pg   # quick
```

{MARKER}
"""


@dataclass
class Row:
    target: str
    what: str
    matches: str
    p50: float
    p95: float
    extra: str = ""


def measure(name: str, port: int, auth: tuple[str, str] | None, pl: Plan, args: argparse.Namespace) -> list[Row]:
    client = Client(port, auth)
    qp = query_plan(pl, args.repeat, args.seed)
    times: dict[str, list[float]] = {q: [] for q in QUERIES}
    counts: dict[str, set[int]] = {q: set() for q in QUERIES}
    for rep in range(-1, args.repeat):
        for q in QUERIES:
            keys, expected = qp[q][max(rep, 0)]
            t0 = time.perf_counter()
            ids = client.call("POST", "/tools/find", {"Level": "Study", "Query": keys, "Expand": False})
            dt = (time.perf_counter() - t0) * 1000
            if len(ids) != expected:
                raise RuntimeError(f"{name} {q}: {len(ids)} matches, expected {expected}")
            if rep >= 0:
                times[q].append(dt)
                counts[q].add(len(ids))
    rows = [Row(name, f"/tools/find {q}", _span(counts[q]), p(times[q], 0.5), p(times[q], 0.95)) for q in QUERIES]
    pages: list[float] = []
    seen, since = 0, 0
    t_walk = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        page = client.call("GET", f"/studies?expand&since={since}&limit=100")
        pages.append((time.perf_counter() - t0) * 1000)
        seen += len(page)
        since += 100
        if len(page) < 100:
            break
    walk = time.perf_counter() - t_walk
    if seen != len(pl.studies):
        raise RuntimeError(f"{name}: /studies?expand walk saw {seen} studies, expected {len(pl.studies)}")
    rows.append(Row(name, "/studies?expand&limit=100 walk", str(seen), p(pages, 0.5), p(pages, 0.95),
                    f"{walk:.2f} s for {len(pages)} pages"))
    h.log(f"{name}: " + ", ".join(f"{r.what} p50 {r.p50:.1f} ms" for r in rows))
    return rows


def _span(values: set[int]) -> str:
    return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def vacuum_analyze(url: str) -> None:
    """What PostgreSQL's autovacuum does within a minute or two of a bulk load (visibility map,
    statistics), done at once so that the queries are measured in the steady state."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def run_hub(name: str, db: Callable[[], contextlib.AbstractContextManager[str | None]], files: list[Path],
            pl: Plan, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="rishub-bench-rest-") as tmp, db() as url:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http_port, dicom_port), h.rishub_server(cfg, http_port, work):
            t = h.run_storescu("RISHUB", dicom_port, files, args.timeout)
            h.log(f"{name}: stored {len(files)} files in {t:.1f} s")
            if url:
                vacuum_analyze(url)
            return measure(name, http_port, ("admin", h.ADMIN_PASSWORD), pl, args)


def run_orthanc(name: str, files: list[Path], pl: Plan, args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="rishub-bench-rest-orthanc-") as tmp:
        with h.orthanc_server(Path(tmp)) as (http_port, dicom_port):
            t = h.run_storescu("ORTHANC", dicom_port, files, args.timeout)
            h.log(f"{name}: stored {len(files)} files in {t:.1f} s")
            return measure(name, http_port, None, pl, args)


def section(rows: list[Row], pl: Plan, files: int, info: dict[str, str], args: argparse.Namespace,
            skipped: list[str], errors: list[str]) -> str:
    lines = [f"## REST {info['date']}", "",
             f"Archive: {len(pl.patient_ids)} patients, {len(pl.studies)} studies, {files} instances (one per "
             f"series), seed {args.seed}; {args.repeat} repetitions per query after one warm-up round, the four "
             "interleaved; one keep-alive HTTP connection; Basic auth on the hub, none on Orthanc.", "",
             "| target | request | results | p50 (ms) | p95 (ms) | p50 < 20 ms | note |",
             "|---|---|---:|---:|---:|:---:|---|"]
    for r in rows:
        ok = "" if "walk" in r.what else ("yes" if r.p50 < 20 else "**no**")
        lines.append(f"| {r.target} | {r.what} | {r.matches} | {r.p50:.1f} | {r.p95:.1f} | {ok} | {r.extra} |")
    lines.append("")
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    if errors:
        lines += ["Errors: " + "; ".join(errors), ""]
    lines.append(h.machine_line(info))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=10_000, help="studies in the archive (10000)")
    ap.add_argument("--repeat", type=int, default=30, help="/tools/find repetitions per query (30)")
    ap.add_argument("--seed", type=int, default=20261122, help="seed of the synthetic archive")
    h.add_common_args(ap, "limit of each storescu run in seconds")
    args = ap.parse_args(argv)
    h.apply_hub_env(ap, args.hub_env)
    if min(args.studies, args.repeat) < 1:
        ap.error("--studies and --repeat must be at least 1")
    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    orthanc = h.find_orthanc(args.skip_orthanc, skipped)
    pl = plan(args.studies, args.seed)
    files = generate(pl, args.seed)
    rows: list[Row] = []
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], list[Row]]) -> None:
        try:
            rows.extend(fn())
        except (RuntimeError, OSError, subprocess.SubprocessError, TimeoutError, http.client.HTTPException) as exc:
            h.log(f"{what} FAILED: {exc}")
            errors.append(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    if orthanc:
        attempt(f"Orthanc {orthanc}", lambda: run_orthanc(f"Orthanc {orthanc}", files, pl, args))
    attempt("rishub SQLite", lambda: run_hub("rishub SQLite", lambda: contextlib.nullcontext(None), files, pl, args))
    if pg is not None:
        attempt("rishub PostgreSQL", lambda: run_hub("rishub PostgreSQL", pg.database, files, pl, args))
    text = section(rows, pl, len(files), h.machine(pg_version, orthanc), args, skipped, errors)
    h.publish(text, args.write, MARKER, INTRO)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
