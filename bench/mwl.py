"""Modality Worklist C-FIND benchmark (PS3.4 Annex K).

10,000 scheduled steps (one order each) are written through ``OrderRepository`` into a fresh SQLite
and PostgreSQL index; one station (``CT_BUSY``) has a day of ~40 steps today, the rest are spread
over 50 other stations and 60 days. ``rishub serve`` runs on it, and the query a modality sends at
the start of its day (Scheduled Station AE Title + today's SPS Start Date, 12 return keys + 8 in
the SPS item) is timed with a pynetdicom client (one association, request -> final response), with
DCMTK ``findscu -W`` as a whole process (association included) and with ``findscu --repeat`` on one
association (mean). Target: < 20 ms, judged on ``findscu --repeat`` (a C++ client: what remains is the
hub); the pynetdicom *final* column is bound by that client decoding each answer (~1.5 ms each, as
in bench/RESULTS.md for Q/R C-FIND; TCP_NODELAY set on its socket), its *first* column shows the
hub's time to the first match. ``findscu process`` includes process start and association set-up.
Prints a markdown table.

Usage: ``.venv/bin/python bench/mwl.py [--steps 10000] [--repeat 30] [--skip-pg]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness as h

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.domain.orders import (  # noqa: E402
    OrderAction,
    OrderCommand,
    PatientIdentity,
    PatientRecord,
    ScheduledStep,
    StepStatus,
)
from hub.store.db import Database  # noqa: E402
from hub.store.orders import OrderRepository  # noqa: E402

BUSY, BUSY_STEPS = "CT_BUSY", 40
TARGET_MS = 20.0
TOP_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyInstanceUID",
            "RequestedProcedureID", "RequestedProcedureDescription", "RequestedProcedurePriority",
            "ReferringPhysicianName", "AdmissionID", "CurrentPatientLocation")
SPS_KEYS = ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
            "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID", "ScheduledProcedureStepDescription",
            "ScheduledPerformingPhysicianName", "ScheduledProcedureStepStatus")
SURNAMES = ("SMITH", "JONES", "MÜLLER", "GARCIA", "NGUYEN", "KOWALSKI", "ROSSI", "DUBOIS")


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _s(vr: str, value: str) -> dict:
    return {"vr": vr, "Value": [value]}


def command(n: int, station: str, date: str, time_: str, rng: random.Random) -> OrderCommand:
    pid = f"P{n % 4000:05d}"
    name = f"{rng.choice(SURNAMES)}^{chr(65 + n % 26)}{n}"
    patient = PatientRecord(PatientIdentity(pid, "HOSP"), {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]}, "00100020": _s("LO", pid),
        "00100030": _s("DA", "19600101"), "00100040": _s("CS", "F" if n % 2 else "M")})
    modality = station.split("_")[0][:2]
    item = {"00400001": _s("AE", station), "00080060": _s("CS", modality), "00400002": _s("DA", date),
            "00400003": _s("TM", time_), "00400009": _s("SH", f"SPS{n}"), "00400007": _s("LO", "Chest CT"),
            "00400006": {"vr": "PN", "Value": [{"Alphabetic": "Tech^Tom"}]}}
    attrs = {"00401001": _s("SH", f"RP{n}"), "00321060": _s("LO", "CT chest with contrast"),
             "00401003": _s("SH", "ROUTINE"), "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Ref^Rita"}]}}
    return OrderCommand(OrderAction.CREATE, "NW", "SC", patient, f"1.2.826.0.1.3680043.10.543.7.{n}", f"A{n:07d}",
                        f"RP{n}", f"PL{n}", f"FI{n}", attrs,
                        [ScheduledStep(f"SPS{n}", StepStatus.SCHEDULED, modality, station, date, time_, item)],
                        specific_character_set="ISO_IR 100")


def fill(url: str, steps: int, today: dt.date) -> float:
    rng = random.Random(20301122)
    repo = OrderRepository(Database(url))
    t0 = time.perf_counter()
    stations = [f"{m}_{i}" for i, m in enumerate(["CT", "MR", "US", "CR", "NM"] * 10)]
    n = 0
    while n < steps:
        with repo.unit() as unit:
            for _ in range(min(1000, steps - n)):
                if n < BUSY_STEPS:
                    station, date = BUSY, today
                    minutes = 7 * 60 + n * 15
                else:
                    station, date = rng.choice(stations), today + dt.timedelta(days=rng.randrange(-30, 30))
                    minutes = rng.randrange(7 * 60, 19 * 60)
                unit.apply_order(command(n, station, date.strftime("%Y%m%d"),
                                         f"{minutes // 60:02d}{minutes % 60:02d}00", rng), "bench")
                n += 1
    repo.db.dispose()
    return time.perf_counter() - t0


def _nodelay(event: object) -> None:
    """TCP_NODELAY on the client socket, as dcmtk's TCP_NODELAY=1 (else Nagle + delayed ACK ~40 ms)."""
    with contextlib.suppress(AttributeError, OSError):
        sock = event.assoc.dul.socket.socket  # type: ignore[attr-defined]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def pynetdicom_times(port: int, today: str, repeat: int) -> tuple[list[float], list[float], int]:
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    ds = Dataset()
    for k in TOP_KEYS:
        setattr(ds, k, "")
    item = Dataset()
    for k in SPS_KEYS:
        setattr(item, k, "")
    item.ScheduledStationAETitle, item.ScheduledProcedureStepStartDate = BUSY, today
    ds.ScheduledProcedureStepSequence = [item]
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="RISHUB", evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)])
    times, firsts, matches = [], [], 0
    try:
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            got, first = 0, 0.0
            for st, _ in assoc.send_c_find(ds, ModalityWorklistInformationFind):
                if st.Status == 0xFF00:
                    got += 1
                    first = first or time.perf_counter() - t0
            times.append(time.perf_counter() - t0)
            firsts.append(first)
            matches = got
    finally:
        assoc.release()
    return times[1:], firsts[1:], matches


def findscu_args(port: int, today: str) -> list[str]:
    args = ["/usr/bin/findscu", "-W", "-aec", "RISHUB"]
    for k in TOP_KEYS:
        args += ["-k", k]
    for k in SPS_KEYS:
        value = {"ScheduledStationAETitle": BUSY, "ScheduledProcedureStepStartDate": today}.get(k)
        key = f"ScheduledProcedureStepSequence[0].{k}"
        args += ["-k", f"{key}={value}" if value else key]
    return args + ["127.0.0.1", str(port)]


def findscu_times(port: int, today: str, repeat: int) -> tuple[list[float], float]:
    env = {**os.environ, "TCP_NODELAY": "1"}
    args = findscu_args(port, today)
    times = []
    for _ in range(repeat + 1):
        t0 = time.perf_counter()
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=60)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    subprocess.run([*args[:1], "--repeat", str(repeat), *args[1:]], env=env, check=True, capture_output=True,
                   timeout=120)
    return times[1:], (time.perf_counter() - t0) / repeat


def run(backend: str, url: str | None, args: argparse.Namespace) -> list[str]:
    today = dt.date.today()
    with tempfile.TemporaryDirectory(prefix="rishub-mwl-") as tmp:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http_port, dicom_port):
            h.log(f"{backend}: filling {args.steps} scheduled steps")
            fill_s = fill(h.index_url(work, url), args.steps, today)
            with h.rishub_server(cfg, http_port, work):
                d = today.strftime("%Y%m%d")
                pn, first, matches = pynetdicom_times(dicom_port, d, args.repeat)
                fs, fs_mean = findscu_times(dicom_port, d, args.repeat)
    ms = [1000 * x for x in pn]
    fms = [1000 * x for x in fs]
    first_ms = [1000 * x for x in first]
    ok = "yes" if fs_mean * 1000 < TARGET_MS else "no"
    return [f"| {backend} | {matches} | {1000 * fs_mean:.1f} | {ok} | {p(fms, 0.5):.1f} | {p(first_ms, 0.5):.1f} | "
            f"{p(ms, 0.5):.1f} | {p(ms, 0.95):.1f} | {fill_s:.0f} |"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--pg-url", default=h.DEFAULT_PG_URL)
    args = ap.parse_args()
    rows = run("SQLite", None, args)
    skipped: list[str] = []
    pg, _ = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    if pg is not None:
        with pg.database() as url:
            rows += run("PostgreSQL", url, args)
    print(f"\nMWL C-FIND, {args.steps} scheduled steps, station {BUSY} today ({BUSY_STEPS} steps), "
          f"{len(TOP_KEYS)} + {len(SPS_KEYS)} return keys, {args.repeat} repetitions\n")
    print("| backend | matches | findscu --repeat mean (ms) | < 20 ms | findscu process p50 (ms) "
          "| pynetdicom first p50 (ms) | pynetdicom final p50 (ms) | pynetdicom final p95 (ms) | fill (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    for s in skipped:
        print(f"skipped: {s}")


if __name__ == "__main__":
    main()
