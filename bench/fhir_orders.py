"""FHIR ServiceRequest create -> worklist benchmark (issue 7), service level.

Each ServiceRequest (contained Patient, ACSN identifier, LOINC code, DCM modality, performer Device) is
created through ``FhirOrderService.create`` on a fresh SQLite and PostgreSQL index, then its worklist item
is looked up with ``WorklistService.find`` by accession (what MWL C-FIND runs), so a row counts only once
its item is visible. Measured: sequential creates, creates from ``--threads`` threads, and conditional
creates (``If-None-Exist``) of already known requests (the idempotent resend path). Target >= 200/s.
Prints a markdown table.

Usage: ``.venv/bin/python bench/fhir_orders.py [--orders 2000] [--threads 4] [--skip-pg]``
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness as h

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.app import Hub  # noqa: E402
from hub.domain.query import Condition, Match  # noqa: E402
from hub.services.fhir_orders import FhirOrderService  # noqa: E402
from hub.settings import load  # noqa: E402

TARGET = 200.0
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACC = "http://ris.example/accession"


def request(n: int) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order", "priority": "routine",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "ACSN"}]}, "system": ACC, "value": f"B{n:08d}"}],
        "contained": [{"resourceType": "Patient", "id": "p",
                       "identifier": [{"system": "urn:oid:1.2.3", "value": f"BP{n % 5000:05d}"}],
                       "name": [{"family": "Bench", "given": [f"N{n}"]}], "birthDate": "1970-01-01",
                       "gender": "male" if n % 2 else "female"}],
        "subject": {"reference": "#p"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}],
        "occurrenceDateTime": f"2031-01-{1 + n % 28:02d}T{8 + n % 10:02d}:00:00+01:00",
        "performer": [{"type": "Device", "display": f"CT_{n % 20}"}],
    }


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else 0.0


def create_and_find(hub: Hub, svc: FhirOrderService, n: int, conditional: bool = False) -> float:
    t0 = time.perf_counter()
    cond = f"identifier={ACC}|B{n:08d}" if conditional else None
    svc.create(request(n), if_none_exist=cond)
    found = list(hub.worklist.find([Condition("AccessionNumber", Match.SINGLE, f"B{n:08d}")]))
    if len(found) != 1:
        raise AssertionError(f"order {n}: {len(found)} worklist items")
    return time.perf_counter() - t0


def timed(fn: Any, items: range, threads: int) -> tuple[float, list[float]]:  # noqa: ANN401
    t0 = time.perf_counter()
    if threads <= 1:
        lat = [fn(n) for n in items]
    else:
        with ThreadPoolExecutor(threads) as pool:
            lat = list(pool.map(fn, items))
    return time.perf_counter() - t0, lat


def run(backend: str, url: str | None, args: argparse.Namespace) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rishub-fhir-") as tmp:
        env = {"RISHUB_DATA_DIR": str(Path(tmp) / "data"), "RISHUB_ADMIN_PASSWORD": h.ADMIN_PASSWORD}
        if url:
            env["RISHUB_DATABASE_URL"] = url
        hub = Hub.open(load(environ=env), upgrade_schema=True)
        try:
            svc = FhirOrderService(hub.orders, hub.db)
            half = args.orders // 2
            cases = [
                ("create, 1 thread", lambda n: create_and_find(hub, svc, n), range(0, half), 1),
                (f"create, {args.threads} threads", lambda n: create_and_find(hub, svc, n),
                 range(half, args.orders), args.threads),
                (f"conditional create of known, {args.threads} threads",
                 lambda n: create_and_find(hub, svc, n, conditional=True), range(0, args.orders), args.threads),
            ]
            for label, fn, items, threads in cases:
                h.log(f"{backend}: {label} ({len(items)})")
                total, lat = timed(fn, items, threads)
                rate = len(items) / total
                ms = [1000 * x for x in lat]
                rows.append(f"| {backend} | {label} | {len(items)} | {rate:.0f} | {'yes' if rate >= TARGET else 'no'} "
                            f"| {p(ms, 0.5):.1f} | {p(ms, 0.95):.1f} |")
        finally:
            hub.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--pg-url", default=h.DEFAULT_PG_URL)
    args = ap.parse_args()
    rows = run("SQLite", None, args)
    skipped: list[str] = []
    pg, _ = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    if pg is not None:
        with pg.database() as url:
            rows += run("PostgreSQL", url, args)
    print(f"\nFHIR ServiceRequest create -> worklist item visible (service level), target >= {TARGET:.0f}/s\n")
    print("| backend | case | requests | rate (/s) | >= 200/s | latency p50 (ms) | latency p95 (ms) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for s in skipped:
        print(f"skipped: {s}")


if __name__ == "__main__":
    main()
