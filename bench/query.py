"""Query/Retrieve benchmark: study-level C-FIND latency on a filled index, C-MOVE/C-GET throughput.

* **C-FIND**: a synthetic index (``bench/fill.py``: 10,000 studies / 100,000 instances by default,
  deterministic) is bulk-inserted into a fresh SQLite and PostgreSQL index, ``rishub serve`` runs on
  it, and a pynetdicom client measures exact PatientID, PatientName ``SMI*``, a one-month StudyDate
  range and ModalitiesInStudy=CT (time to the first pending and to the final response, p50/p95).
* **C-MOVE / C-GET**: the cached 300-slice CT series (``bench/ingest.py``'s) is stored into a fresh
  hub, then retrieved with dcmtk ``movescu`` (to a dcmtk ``storescp``) and ``getscu``; the same
  against Orthanc 1.10 when installed.

Prints markdown tables; ``--write`` adds a dated section to ``bench/RESULTS.md``.
Usage: ``.venv/bin/python bench/query.py [--studies 10000] [--repeat 30] [--skip-pg] [--skip-orthanc] [--write]``
"""

from __future__ import annotations

import argparse
import calendar
import contextlib
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import harness as h
from fill import Catalog, fill
from retrieve import Db, RetrieveRow, bench_retrieve_hub, bench_retrieve_orthanc, retrieve_table

MARKER = "<!-- query/retrieve results: newest first; `bench/query.py --write` inserts a section below -->"
P50_TARGET_MS = 20.0
RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
               "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
               "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
QUERIES = ("PatientID exact", "PatientName SMI*", "StudyDate one month", "ModalitiesInStudy=CT")


@dataclass
class FindRow:
    """One query kind on one backend: per-repetition seconds and match counts."""

    backend: str
    query: str
    matches: list[int] = field(default_factory=list)
    first: list[float] = field(default_factory=list)  # to the first pending response (reps with matches)
    total: list[float] = field(default_factory=list)  # to the final response
    assoc: list[float] = field(default_factory=list)  # association set-up, not in the two above
    findscu: float | None = None  # DCMTK findscu: mean seconds per query on one association


def p(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# --------------------------------------------------------------------------- C-FIND


def query_plan(cat: Catalog, reps: int, seed: int) -> dict[str, list[tuple[dict[str, str], int]]]:
    """Per query kind, ``reps`` (matching keys, expected matches): different patients and months."""
    rng = random.Random(seed)
    n_pat = len(cat.patient_ids)
    per_patient = [0] * n_pat
    for pat in cat.study_patient:
        per_patient[pat] += 1
    pats = rng.sample(range(n_pat), reps) if reps <= n_pat else [rng.randrange(n_pat) for _ in range(reps)]
    months = sorted({d[:6] for d in cat.study_dates})
    picked = rng.sample(months, reps) if reps <= len(months) else [rng.choice(months) for _ in range(reps)]
    smi = sum(1 for pat in cat.study_patient if cat.surnames[pat].startswith("SMI"))
    ct = sum(1 for mods in cat.study_modalities if "CT" in mods)
    return {
        QUERIES[0]: [({"PatientID": cat.patient_ids[i]}, per_patient[i]) for i in pats],
        QUERIES[1]: [({"PatientName": "SMI*"}, smi)] * reps,
        QUERIES[2]: [({"StudyDate": f"{m}01-{m}{calendar.monthrange(int(m[:4]), int(m[4:]))[1]}"},
                      sum(1 for d in cat.study_dates if d[:6] == m)) for m in picked],
        QUERIES[3]: [({"ModalitiesInStudy": "CT"}, ct)] * reps,
    }


def _nodelay(event: object) -> None:
    """EVT_CONN_OPEN: TCP_NODELAY on the client socket, as dcmtk's TCP_NODELAY=1 (else Nagle + delayed ACK ~40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        sock = event.assoc.dul.socket.socket  # type: ignore[attr-defined]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def find_once(ae: object, port: int, keys: dict[str, str]) -> tuple[float, float | None, float, int]:
    """One association, one study-level C-FIND. Returns (association s, first response s, final s, matches)."""
    from pydicom.dataset import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for kw in RETURN_KEYS:
        setattr(ds, kw, keys.get(kw, ""))
    t0 = time.perf_counter()
    handlers = [(evt.EVT_CONN_OPEN, _nodelay)]
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB", evt_handlers=handlers)  # type: ignore[attr-defined]
    t_assoc = time.perf_counter() - t0
    if not assoc.is_established:
        raise RuntimeError("association with the hub rejected or aborted")
    first: float | None = None
    total, n = -1.0, 0
    try:
        start = time.perf_counter()
        for status, _ in assoc.send_c_find(ds, FIND):
            now = time.perf_counter() - start
            if not status:
                raise RuntimeError("C-FIND: no response (timeout or association aborted)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                n += 1
                first = now if first is None else first
            elif code == 0:
                total = now
            else:
                raise RuntimeError(f"C-FIND failed: status 0x{code:04X} {status.get('ErrorComment', '')}")
    finally:
        assoc.release()
    return t_assoc, first, total, n


def findscu_mean(port: int, keys: dict[str, str], reps: int) -> float:
    """Mean seconds per query with DCMTK ``findscu --repeat`` (a C++ client, one association):
    the wall time of ``reps + 1`` repetitions minus that of one, divided by ``reps``, so the
    process start and the association set-up cancel out."""
    args = ["/usr/bin/findscu", "-S", "-aet", "BENCH", "-aec", "RISHUB", "127.0.0.1", str(port),
            "-k", "QueryRetrieveLevel=STUDY"]
    for kw in RETURN_KEYS:
        args += ["-k", f"{kw}={keys[kw]}" if keys.get(kw) else kw]
    env = {**os.environ, "TCP_NODELAY": "1"}

    def wall(n: int) -> float:
        best = float("inf")
        for _ in range(3):  # the fastest of three: process start noise only adds
            t0 = time.perf_counter()
            subprocess.run([*args, "--repeat", str(n)], env=env, capture_output=True, check=True, timeout=600)
            best = min(best, time.perf_counter() - t0)
        return best

    return max(0.0, (wall(reps + 1) - wall(1)) / reps)


def client_ae() -> object:
    """A pynetdicom C-FIND SCU; it polls with the hub's adaptive reactor sleep when that is importable."""
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    with contextlib.suppress(ImportError):
        from interfaces.dimse import reactor

        reactor.install()
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    return ae


def bench_find(name: str, db: Db, args: argparse.Namespace, errors: list[str]) -> tuple[list[FindRow], Catalog]:
    """Fill a fresh index, serve it, and run every query kind ``args.repeat`` times (interleaved)."""
    with db() as url, tempfile.TemporaryDirectory(prefix="rishub-qbench-") as tmp:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http_port, dicom_port):
            cat = fill(h.index_url(work, url), args.studies, seed=args.seed)
            h.log(f"{name}: filled {len(cat.patient_ids)} patients, {len(cat.study_dates)} studies, {cat.series} "
                f"series, {cat.instances} instances in {cat.seconds:.1f} s")
            plan = query_plan(cat, args.repeat, args.seed)
            rows = {q: FindRow(name, q) for q in QUERIES}
            with h.rishub_server(cfg, http_port, work):
                seen = h.instance_count(http_port, ("admin", h.ADMIN_PASSWORD))
                if seen != cat.instances:
                    raise RuntimeError(f"the hub counts {seen} instances, the fill wrote {cat.instances}")
                ae = client_ae()
                for q in QUERIES:  # warm-up round, not measured
                    find_once(ae, dicom_port, plan[q][0][0])
                for rep in range(args.repeat):
                    for q in QUERIES:
                        keys, expected = plan[q][rep]
                        t_assoc, first, total, n = find_once(ae, dicom_port, keys)
                        row = rows[q]
                        row.assoc.append(t_assoc)
                        row.total.append(total)
                        row.matches.append(n)
                        if first is not None:
                            row.first.append(first)
                        if n != expected:
                            errors.append(f"{name} {q} {keys}: {n} matches, expected {expected}")
                if Path("/usr/bin/findscu").exists():
                    for q in QUERIES:
                        rows[q].findscu = findscu_mean(dicom_port, plan[q][0][0], min(args.repeat, 20))
                for row in rows.values():
                    h.log(f"{name} / {row.query}: matches {min(row.matches)}-{max(row.matches)}, final p50 "
                        f"{statistics.median(row.total) * 1e3:.1f} ms, p95 {p(row.total, 0.95) * 1e3:.1f} ms")
    return list(rows.values()), cat


# --------------------------------------------------------------------------- report


def ms(values: list[float]) -> tuple[str, str]:
    return (f"{statistics.median(values) * 1e3:.1f}", f"{p(values, 0.95) * 1e3:.1f}") if values else ("-", "-")


def _verdict(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "yes" if seconds * 1e3 < P50_TARGET_MS else "**no**"


def find_table(rows: list[FindRow]) -> str:
    out = ["| backend | query | matches | first p50 (ms) | first p95 (ms) | final p50 (ms) | final p95 (ms) | "
           f"final p50 < {P50_TARGET_MS:.0f} ms | assoc. p50 (ms) | findscu mean (ms) | "
           f"findscu < {P50_TARGET_MS:.0f} ms |",
           "|---|---|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|"]
    for r in rows:
        lo, hi = min(r.matches), max(r.matches)
        matches = str(lo) if lo == hi else f"{lo}-{hi} (mean {statistics.mean(r.matches):.1f})"
        ok = "yes" if statistics.median(r.total) * 1e3 < P50_TARGET_MS else "**no**"
        out.append(f"| {r.backend} | {r.query} | {matches} | {' | '.join(ms(r.first))} | {' | '.join(ms(r.total))} | "
                   f"{ok} | {statistics.median(r.assoc) * 1e3:.1f} | "
                   f"{'-' if r.findscu is None else f'{r.findscu * 1e3:.1f}'} | {_verdict(r.findscu)} |")
    return "\n".join(out)


def section(find_rows: list[FindRow], cat: Catalog | None, ret_rows: list[RetrieveRow], info: dict[str, str],
            args: argparse.Namespace, skipped: list[str], errors: list[str], notes: list[str]) -> str:
    lines = [f"## Query/Retrieve {info['date']}", ""]
    if cat is not None:
        smi = next((r.matches[0] for r in find_rows if r.query == QUERIES[1]), "?")
        lines += [
            f"Index: {len(cat.patient_ids)} patients, {len(cat.study_dates)} studies, {cat.series} series, "
            f"{cat.instances} instances (`bench/fill.py`, seed {args.seed}). `SMI*` matches {smi} studies. "
            f"C-FIND at STUDY level (Study Root, {len(RETURN_KEYS)} return keys), pynetdicom client, one association "
            f"per repetition (set-up not in the latencies; its p50 in the last column), {args.repeat} repetitions "
            "per query, the four queries interleaved, after one warm-up round; PatientID and StudyDate vary per "
            "repetition. *first* = request sent -> first pending response received; *final* = -> final response.",
            "", find_table(find_rows), "",
        ]
    if ret_rows:
        lines += [
            f"C-MOVE (`movescu` -> dcmtk `storescp`) and C-GET (`getscu -od`) of the {args.slices}-slice CT series, "
            f"stored first with `storescu`; wall time of the dcmtk process, median of {args.retrieve_repeat}; "
            + ("vs Orthanc in the same run." if any(r.target.startswith("Orthanc") for r in ret_rows) else
               "vs Orthanc's reference for 300 slices (0.48 s C-MOVE, 0.51 s C-GET), Orthanc not in this run."),
            "", retrieve_table(ret_rows), "",
        ]
    if h.HUB_OVERRIDES:
        changed = ", ".join(f"`{k}={v}`" for k, v in h.HUB_OVERRIDES.items())
        lines += [f"Hub settings changed from the defaults: {changed}", ""]
    for label, items in (("Skipped", skipped), ("Not measured", notes), ("Failed", errors)):
        if items:
            lines += [f"{label}: " + "; ".join(items), ""]
    lines += [h.machine_line(info), ""]
    return "\n".join(lines)


INTRO = f"""# Query/Retrieve benchmark

`bench/query.py` bulk-fills a fresh index (SQLite, then a throw-away PostgreSQL database) with a
deterministic synthetic archive (`bench/fill.py`; default 10,000 studies, ~4,000 patients, ~3 series
per study, 100,000 instances; no blob files), serves it with `rishub serve` and measures study-level
C-FIND latency with a pynetdicom client. Target: final-response p50 under {P50_TARGET_MS:.0f} ms per query on both.
It then stores the 300-slice CT series of the ingest benchmark into a fresh hub and times dcmtk
`movescu` / `getscu`; target: at least Orthanc 1.10 on the same series (0.48 s C-MOVE, 0.51 s C-GET here).

```sh
.venv/bin/python bench/query.py --write                              # full run, adds a section below
.venv/bin/python bench/query.py --studies 500 --repeat 10 --skip-orthanc   # quick
```

Options: `--studies N` (10000), `--repeat N` (30 C-FIND repetitions), `--retrieve-repeat N` (3),
`--slices N` (300), `--skip-pg`, `--skip-orthanc`, `--skip-find`, `--skip-retrieve`, `--seed N`,
`--pg-url URL`, `--timeout S`, `--hub-env RISHUB_KEY=VALUE`, `--write`.

{MARKER}
"""


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=10_000, help="studies in the index, 10 instances each (10000)")
    ap.add_argument("--repeat", type=int, default=30, help="C-FIND repetitions per query (30)")
    ap.add_argument("--retrieve-repeat", type=int, default=3, help="C-MOVE/C-GET runs; the median is reported (3)")
    ap.add_argument("--slices", type=int, default=300, help="slices of the retrieved CT series (300)")
    ap.add_argument("--seed", type=int, default=20261122, help="seed of the synthetic index and query values")
    ap.add_argument("--skip-find", action="store_true", help="no C-FIND part")
    ap.add_argument("--skip-retrieve", action="store_true", help="no C-MOVE/C-GET part")
    h.add_common_args(ap, "limit of each dcmtk step in seconds")
    args = ap.parse_args(argv)
    h.apply_hub_env(ap, args.hub_env)
    if min(args.studies, args.repeat, args.retrieve_repeat, args.slices) < 1:
        ap.error("--studies, --repeat, --retrieve-repeat and --slices must be at least 1")
    missing = [str(t) for t in (h.STORESCU, h.STORESCP, h.MOVESCU, h.GETSCU) if not t.exists()]
    if missing and not args.skip_retrieve:
        ap.error(f"{', '.join(missing)} not found: install dcmtk (or --skip-retrieve)")

    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    orthanc = h.find_orthanc(args.skip_orthanc or args.skip_retrieve, skipped)
    backends: list[tuple[str, Db]] = [("rishub SQLite", lambda: contextlib.nullcontext(None))]
    if pg is not None:
        backends.append(("rishub PostgreSQL", pg.database))
    errors: list[str] = []
    notes: list[str] = []
    find_rows: list[FindRow] = []
    cat: Catalog | None = None
    ret_rows: list[RetrieveRow] = []

    def attempt(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - reported in the output; the other targets still run
            h.log(f"{what} FAILED: {type(exc).__name__}: {exc}")
            errors.append(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    if not args.skip_find:
        for name, db in backends:
            def run_find(name: str = name, db: Db = db) -> None:
                nonlocal cat
                rows, cat = bench_find(name, db, args, errors)
                find_rows.extend(rows)
            attempt(f"{name} C-FIND", run_find)
    if not args.skip_retrieve:
        files, rr, t = h.series(args.slices), args.retrieve_repeat, args.timeout
        if orthanc:
            attempt(f"Orthanc {orthanc} C-MOVE/C-GET",
                    lambda: ret_rows.extend(bench_retrieve_orthanc(f"Orthanc {orthanc}", files, rr, t, errors)))
        for name, db in backends:
            attempt(f"{name} C-MOVE/C-GET",
                    lambda name=name, db=db: ret_rows.extend(bench_retrieve_hub(name, db, files, rr, t, errors)))
    # a hub SCP that is still a placeholder is "not measured", not a failure of the benchmark
    notes += [e for e in errors if "NotImplementedError" in e]
    errors = [e for e in errors if "NotImplementedError" not in e]

    info = h.machine(pg_version, orthanc)
    text = section(find_rows, cat, ret_rows, info, args, skipped, errors, notes)
    h.publish(text, args.write, MARKER, INTRO)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
