"""FHIR ServiceRequest create -> worklist benchmark (issue 7), service level.

Each ServiceRequest (contained Patient, ACSN identifier, LOINC code, DCM modality, performer Device) is
created through ``FhirOrderService.create`` on a fresh SQLite and PostgreSQL index, then its worklist item
is looked up with ``WorklistService.find`` by accession (what MWL C-FIND runs), so a row counts only once
its item is visible. Measured: sequential creates, creates from ``--threads`` threads, and conditional
creates (``If-None-Exist``) of already known requests (the idempotent resend path). Target >= 200/s.
Prints a markdown table.

``--http``: the same over HTTP against the real server (``rishub serve``, waitress) on SQLite and a throw-away
PostgreSQL database: after a warm-up, ``POST /fhir/ServiceRequest`` from 1 client and from ``--threads``
concurrent clients (one keep-alive connection each: ``http.client`` by default, ``--client requests``
for the requests library), plain and with ``If-None-Exist`` (new and
already known requests); every answer must be 201 (200 for a known one) with ``Location`` (201) and the
ServiceRequest. Afterwards every created order must have its SCHEDULED step (= MWL item) in the index.
Timing starts once the server is idle after its start-up; besides rate and latency the table gives the server
process's CPU time per request (user + system, /proc), which depends little on what else the machine runs.

Usage: ``.venv/bin/python bench/fhir_orders.py [--http] [--orders N] [--threads 4] [--skip-pg] [--skip-sqlite]
[--client http|requests] [--hub-env RISHUB_HTTP_OPEN=true]``
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness as h
import requests
from sqlalchemy import create_engine, text

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


def row(backend: str, label: str, n: int, total: float, lat: list[float], cpu: float | None = None) -> str:
    rate = n / total
    ms = [1000 * x for x in lat]
    extra = f" {1000 * cpu / n:.2f} |" if cpu is not None else ""
    return (f"| {backend} | {label} | {n} | {rate:.0f} | {'yes' if rate >= TARGET else '**no**'} "
            f"| {p(ms, 0.5):.1f} | {p(ms, 0.95):.1f} |{extra}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): the server's cost, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
                rows.append(row(backend, label, len(items), total, lat))
        finally:
            hub.close()
    return rows


# --------------------------------------------------------------------------- over HTTP


class Poster:
    """``POST /fhir/ServiceRequest`` over one keep-alive connection per client thread.

    ``client="http"`` (default) is the standard library's ``http.client``: an EHR's FHIR client runs on its own
    machine, and here it shares the two cores with the server, so the lighter client leaves the server's cost
    in the figures; ``client="requests"`` is the popular library (about 1.5-2 ms more CPU per request on
    this machine). Either way every answer is parsed and checked."""

    def __init__(self, port: int, client: str = "http") -> None:
        self.port = port
        self.client = client
        self.path = "/fhir/ServiceRequest"
        token = base64.b64encode(f"admin:{h.ADMIN_PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/fhir+json",
                        "Accept": "application/fhir+json"}
        self.conns: dict[int, Any] = {}

    def _post(self, body: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        key = threading.get_ident()
        if self.client == "requests":
            if key not in self.conns:
                self.conns[key] = requests.Session()
            resp = self.conns[key].post(f"http://127.0.0.1:{self.port}{self.path}", data=body,
                                        headers={**self.headers, **headers}, timeout=60)
            return resp.status_code, dict(resp.headers), resp.content
        if key not in self.conns:
            self.conns[key] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn = self.conns[key]
        conn.request("POST", self.path, body=body.encode(), headers={**self.headers, **headers})
        resp = conn.getresponse()
        return resp.status, {k.title(): v for k, v in resp.getheaders()}, resp.read()

    def create(self, n: int, conditional: bool = False, known: bool = False) -> float:
        headers = {"If-None-Exist": f"identifier={ACC}|B{n:08d}"} if conditional else {}
        body = json.dumps(request(n))
        t0 = time.perf_counter()
        status, resp_headers, content = self._post(body, headers)
        dt = time.perf_counter() - t0
        want = 200 if known else 201
        if status != want:
            raise AssertionError(f"order {n}: HTTP {status} (want {want}): {content[:300]!r}")
        got = json.loads(content)
        accession = next(i["value"] for i in got["identifier"] if i.get("system") == ACC)
        if got["resourceType"] != "ServiceRequest" or accession != f"B{n:08d}" or got["status"] != "active" \
                or not (known or resp_headers.get("Location", "").endswith(f"/ServiceRequest/{got['id']}/_history/1")) \
                or resp_headers.get("Etag") != 'W/"1"':
            raise AssertionError(f"order {n}: unexpected answer {status} {resp_headers} {got}")
        return dt

    def close(self) -> None:
        for c in self.conns.values():
            c.close()


def settle(pid: int, timeout: float = 180) -> None:
    """Wait until the server is idle (< 5 % of a core for a second): start-up work in its background threads
    (e.g. compiling the render kernels) is not part of the timings."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - last < 0.05:
            return
        last = now
    h.log(f"server {pid} still busy after {timeout:.0f} s; timing anyway")


def worklist_count(db_url: str) -> tuple[int, int]:
    """(orders, SCHEDULED steps of those orders) in the hub's index: each step is one MWL item."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            orders = conn.execute(text("SELECT count(*) FROM orders WHERE accession_number LIKE 'B%'")).scalar_one()
            steps = conn.execute(text(
                "SELECT count(*) FROM scheduled_steps s JOIN orders o ON o.pk = s.order_pk "
                "WHERE s.status = 'SCHEDULED' AND o.accession_number LIKE 'B%'")).scalar_one()
        return int(orders), int(steps)
    finally:
        engine.dispose()


def run_http(backend: str, url: str | None, args: argparse.Namespace) -> list[str]:
    """``rishub serve`` on a fresh index; warm-up, then the timed cases; then the worklist check."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rishub-fhir-http-") as tmp:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, port, _), h.rishub_server(cfg, port, work) as proc:
            h.log(f"{backend}: server pid {proc.pid}")
            settle(proc.pid)
            poster = Poster(port, args.client)
            warm = range(10_000_000, 10_000_000 + args.warmup)
            h.log(f"{backend}: warm-up ({len(warm)})")
            timed(poster.create, warm, args.threads)
            n = args.orders
            cond: Callable[[int], float] = lambda i: poster.create(i, conditional=True)  # noqa: E731
            known: Callable[[int], float] = lambda i: poster.create(i, conditional=True, known=True)  # noqa: E731
            cases: list[tuple[str, Callable[[int], float], range, int]] = [
                ("create, 1 client", poster.create, range(0, n), 1),
                (f"create, {args.threads} clients", poster.create, range(n, 2 * n), args.threads),
                ("conditional create (new), 1 client", cond, range(2 * n, 3 * n), 1),
                (f"conditional create (new), {args.threads} clients", cond, range(3 * n, 4 * n), args.threads),
                (f"conditional create (known), {args.threads} clients", known, range(0, n), args.threads),
            ]
            for label, fn, items, threads in cases:
                h.log(f"{backend}: {label} ({len(items)})")
                cpu0 = cpu_seconds(proc.pid)
                total, lat = timed(fn, items, threads)
                rows.append(row(backend, label, len(items), total, lat, cpu_seconds(proc.pid) - cpu0))
                h.log(rows[-1])
            poster.close()
            orders, steps = worklist_count(h.index_url(work, url))
            expected = 4 * n + len(warm)
            if orders != expected or steps != expected:
                raise AssertionError(f"{backend}: {orders} orders, {steps} worklist items; expected {expected}")
            h.log(f"{backend}: {steps} orders, each with its SCHEDULED worklist item")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--http", action="store_true", help="over HTTP against `rishub serve`")
    ap.add_argument("--orders", type=int, default=None, help="requests per case (service 2000, HTTP 1000)")
    ap.add_argument("--warmup", type=int, default=100, help="HTTP: untimed creates first (100)")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--client", choices=["http", "requests"], default="http",
                    help="HTTP: the client library (http.client, the default, or requests)")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--pg-url", default=h.DEFAULT_PG_URL)
    ap.add_argument("--hub-env", action="append", default=[], metavar="RISHUB_KEY=VALUE",
                    help="HTTP: change a server setting for a diagnostic run, e.g. RISHUB_HTTP_OPEN=true")
    args = ap.parse_args()
    h.apply_hub_env(ap, args.hub_env)
    args.orders = args.orders or (1000 if args.http else 2000)
    runner = run_http if args.http else run
    rows = [] if args.skip_sqlite else runner("SQLite", None, args)
    skipped: list[str] = []
    pg, _ = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    if pg is not None:
        with pg.database() as url:
            rows += runner("PostgreSQL", url, args)
    where = f"over HTTP (rishub serve, Basic auth, keep-alive, client {args.client})" if args.http else "service level"
    print(f"\nFHIR ServiceRequest create -> worklist item visible ({where}), target >= {TARGET:.0f}/s\n")
    cpu_col = (" server CPU per request (ms) |", "---|") if args.http else ("", "")
    print(f"| backend | case | requests | rate (/s) | >= 200/s | latency p50 (ms) | latency p95 (ms) |{cpu_col[0]}")
    print(f"|---|---|---|---|---|---|---|{cpu_col[1]}")
    print("\n".join(rows))
    for s in skipped:
        print(f"skipped: {s}")


if __name__ == "__main__":
    main()
