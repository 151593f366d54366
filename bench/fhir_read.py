"""FHIR read-side benchmark: ImagingStudy search latency at 10,000 studies (issue 7: p50 < 25 ms).

The synthetic archive of ``bench/study_archive.py`` (10,000 studies of ~4,000 patients, 1-3 series of one
small instance each; ``--studies``) is stored over C-STORE (dcmtk ``storescu``) into ``rishub serve``
on SQLite and PostgreSQL. Then, on one keep-alive connection, p50/p95 of ``--repeat`` runs of
``GET /fhir/ImagingStudy?patient=<id>`` and ``?started=ge<first>&started=le<last>`` (one month, default
page of 20), each answer's ``total`` checked against the plan. Prints a table; writes no RESULTS.md.

```sh
.venv/bin/python bench/fhir_read.py
.venv/bin/python bench/fhir_read.py --studies 1000 --repeat 10 --skip-pg   # quick
```
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import hashlib
import http.client
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import harness as h
from http_client import Client
from query import p
from study_archive import Plan, generate, plan

QUERIES = ("ImagingStudy?patient", "ImagingStudy?started month", "ImagingStudy?patient&_include=subject")
TARGET_MS = 25.0


def orthanc_patient_id(patient_id: str) -> str:
    digest = hashlib.sha1(patient_id.encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def query_plan(pl: Plan, reps: int, seed: int) -> dict[str, list[tuple[str, int]]]:
    rng = random.Random(seed + 7)
    per_pat: dict[int, int] = {}
    for pat, _, _ in pl.studies:
        per_pat[pat] = per_pat.get(pat, 0) + 1
    pats = [rng.randrange(len(pl.patient_ids)) for _ in range(reps)]
    months = sorted({d[:6] for _, d, _ in pl.studies})
    out: dict[str, list[tuple[str, int]]] = {q: [] for q in QUERIES}
    for i in pats:
        pid = orthanc_patient_id(pl.patient_ids[i])
        out[QUERIES[0]].append((f"/fhir/ImagingStudy?patient={pid}", per_pat.get(i, 0)))
        out[QUERIES[2]].append((f"/fhir/ImagingStudy?patient=Patient/{orthanc_patient_id(pl.patient_ids[i])}"
                                "&_include=ImagingStudy:subject", per_pat.get(i, 0)))
    for _ in range(reps):
        m = rng.choice(months)
        last = calendar.monthrange(int(m[:4]), int(m[4:]))[1]
        out[QUERIES[1]].append((f"/fhir/ImagingStudy?started=ge{m[:4]}-{m[4:]}-01&started=le{m[:4]}-{m[4:]}-{last:02d}",
                                sum(1 for _, d, _ in pl.studies if d[:6] == m)))
    return out


def measure(name: str, port: int, pl: Plan, args: argparse.Namespace) -> list[tuple[str, str, str, float, float]]:
    client = Client(port, ("admin", h.ADMIN_PASSWORD))
    qp = query_plan(pl, args.repeat, args.seed)
    times: dict[str, list[float]] = {q: [] for q in QUERIES}
    totals: dict[str, set[int]] = {q: set() for q in QUERIES}
    for rep in range(-1, args.repeat):
        for q in QUERIES:
            path, expected = qp[q][max(rep, 0)]
            t0 = time.perf_counter()
            status, _, raw = client.raw("GET", path, headers={"Accept": "application/fhir+json"})
            bundle = json.loads(raw)
            dt = (time.perf_counter() - t0) * 1000
            if status != 200 or bundle.get("total") != expected:
                raise RuntimeError(f"{name} {q}: HTTP {status}, total {bundle.get('total')}, expected {expected}")
            if rep >= 0:
                times[q].append(dt)
                totals[q].add(expected)
    rows = [(name, q, f"{min(totals[q])}-{max(totals[q])}", p(times[q], 0.5), p(times[q], 0.95)) for q in QUERIES]
    h.log(f"{name}: " + ", ".join(f"{r[1]} p50 {r[3]:.1f} ms" for r in rows))
    return rows


def run_hub(name: str, db: Callable[[], contextlib.AbstractContextManager[str | None]], files: list[Path],
            pl: Plan, args: argparse.Namespace) -> list[tuple[str, str, str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="rishub-bench-fhir-") as tmp, db() as url:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http_port, dicom_port), h.rishub_server(cfg, http_port, work):
            t = h.run_storescu("RISHUB", dicom_port, files, args.timeout)
            h.log(f"{name}: stored {len(files)} files in {t:.1f} s")
            if url:
                import psycopg

                with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
                    c.execute("VACUUM ANALYZE")  # what autovacuum does shortly after a bulk load
            return measure(name, http_port, pl, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=10_000, help="studies in the archive (10000)")
    ap.add_argument("--repeat", type=int, default=30, help="repetitions per query (30)")
    ap.add_argument("--seed", type=int, default=20261122, help="seed of the synthetic archive")
    h.add_common_args(ap, "limit of each storescu run in seconds")
    args = ap.parse_args(argv)
    h.apply_hub_env(ap, args.hub_env)
    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    pl = plan(args.studies, args.seed)
    files = generate(pl, args.seed)
    rows: list[tuple[str, str, str, float, float]] = []
    errors: list[str] = []

    def attempt(what: str, fn: Callable[[], list[tuple[str, str, str, float, float]]]) -> None:
        try:
            rows.extend(fn())
        except (RuntimeError, OSError, subprocess.SubprocessError, TimeoutError, http.client.HTTPException) as exc:
            h.log(f"{what} FAILED: {exc}")
            errors.append(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    attempt("rishub SQLite", lambda: run_hub("rishub SQLite", lambda: contextlib.nullcontext(None), files, pl, args))
    if pg is not None:
        attempt("rishub PostgreSQL", lambda: run_hub("rishub PostgreSQL", pg.database, files, pl, args))
    print(f"FHIR read side: {len(pl.studies)} studies, {len(pl.patient_ids)} patients, {len(files)} instances; "
          f"{args.repeat} runs per query, default page (_count 20)")
    print(f"| target | request | total | p50 (ms) | p95 (ms) | p50 < {TARGET_MS:.0f} ms |")
    print("|---|---|---:|---:|---:|:---:|")
    for target, q, total, p50, p95 in rows:
        print(f"| {target} | {q} | {total} | {p50:.1f} | {p95:.1f} | {'yes' if p50 < TARGET_MS else '**no**'} |")
    for line in skipped:
        print(f"skipped: {line}")
    for line in errors:
        print(f"error: {line}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
