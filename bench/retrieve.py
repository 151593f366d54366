"""C-MOVE / C-GET part of the query benchmark (``bench/query.py``): a series stored into a fresh hub (or
Orthanc) is retrieved with dcmtk ``movescu`` (to a dcmtk ``storescp``, AE ``DEST``) and ``getscu``."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import harness as h

ORTHANC_REFERENCE = {"C-MOVE": 0.48, "C-GET": 0.51}  # s for the 300-slice series, Orthanc 1.10 on this machine
REFERENCE_SLICES = 300
Db = Callable[[], AbstractContextManager[str | None]]


@dataclass
class RetrieveRow:
    target: str
    method: str
    walls: list[float]
    instances: int
    nbytes: int

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


class Destination:
    """dcmtk ``storescp`` as the C-MOVE destination ``DEST``, receiving into ``work/dest``."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "dest"
        self.port = h.free_port()
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Destination:
        self.dir.mkdir()
        logf = (self.work / "storescp.log").open("wb")
        self.proc = subprocess.Popen([str(h.STORESCP), "-aet", "DEST", "-od", str(self.dir), str(self.port)],
                                     env=h.DCMTK_ENV, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        h.wait_port(self.port, 15, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        h.stop(self.proc)


def retrieve_once(method: str, aec: str, port: int, uids: tuple[str, str], out: Path, expected: int,
                  timeout: float) -> float:
    """One ``movescu`` (to DEST, which writes into ``out``) or ``getscu`` (into ``out``); process wall time."""
    for f in out.iterdir():
        f.unlink()
    keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={uids[0]}",
            "-k", f"SeriesInstanceUID={uids[1]}"]
    if method == "C-MOVE":
        cmd = [str(h.MOVESCU), "-S", "-aet", "BENCH", "-aec", aec, "-aem", "DEST", *keys, "127.0.0.1", str(port)]
    else:
        cmd = [str(h.GETSCU), "-S", "-aet", "BENCH", "-aec", aec, *keys, "-od", str(out), "127.0.0.1", str(port)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=h.DCMTK_ENV, capture_output=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    got = sum(1 for _ in out.iterdir())
    if proc.returncode != 0 or got != expected:
        tail = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(cmd[0]).name} exited {proc.returncode}, {got} of {expected} instances "
                           f"received: {' | '.join(tail)}")
    return wall


def retrieve_runs(target: str, aec: str, port: int, dest: Destination, files: list[Path], repeat: int, timeout: float,
                  problems: list[str], server_log: Path | None = None) -> list[RetrieveRow]:
    """``repeat`` C-MOVE and C-GET runs (alternating); a method that fails is reported, not fatal."""
    from pydicom import dcmread

    head = dcmread(files[0], stop_before_pixels=True)
    uids = (str(head.StudyInstanceUID), str(head.SeriesInstanceUID))
    nbytes = sum(f.stat().st_size for f in files)
    get_dir = dest.work / "get"
    get_dir.mkdir(exist_ok=True)
    walls: dict[str, list[float]] = {"C-MOVE": [], "C-GET": []}
    for i in range(repeat):
        for method in list(walls):
            try:
                out = dest.dir if method == "C-MOVE" else get_dir
                wall = retrieve_once(method, aec, port, uids, out, len(files), timeout)
            except Exception as exc:  # noqa: BLE001 - reported; the other method still runs
                note = ""
                if server_log and "NotImplementedError" in server_log.read_text(errors="replace"):
                    note = " (the hub's SCP is not implemented yet: NotImplementedError in its log; skipped)"
                h.log(f"{target} {method} FAILED{note}: {exc}")
                problems.append(f"{target} {method}{note}: {str(exc).splitlines()[0]}")
                del walls[method]
                continue
            walls[method].append(wall)
            h.log(f"{target} / {method} run {i + 1}: {wall:.2f} s = {len(files) / wall:.1f} instances/s")
    return [RetrieveRow(target, m, w, len(files), nbytes) for m, w in walls.items() if w]


def bench_retrieve_hub(name: str, db: Db, files: list[Path], repeat: int, timeout: float,
                       problems: list[str]) -> list[RetrieveRow]:
    """Store ``files`` into a fresh hub (``DEST`` declared in its modalities), then retrieve them."""
    with db() as url, tempfile.TemporaryDirectory(prefix="rishub-rbench-") as tmp:
        work = Path(tmp)
        with Destination(work) as dest, h.hub_config(work, url) as (cfg, http_port, dicom_port):
            nodes = {"DEST": {"aet": "DEST", "host": "127.0.0.1", "port": dest.port}}
            with h.rishub_server(cfg, http_port, work, env={"RISHUB_MODALITIES": json.dumps(nodes)}):
                h.run_storescu("RISHUB", dicom_port, files, timeout)
                stored = h.instance_count(http_port, ("admin", h.ADMIN_PASSWORD))
                if stored != len(files):
                    raise RuntimeError(f"rishub stored {stored} of {len(files)} instances")
                return retrieve_runs(name, "RISHUB", dicom_port, dest, files, repeat, timeout, problems,
                                     work / "serve.log")


def bench_retrieve_orthanc(name: str, files: list[Path], repeat: int, timeout: float,
                           problems: list[str]) -> list[RetrieveRow]:
    """The same against a fresh Orthanc (``DEST`` and ``BENCH`` declared, move/get allowed)."""
    with tempfile.TemporaryDirectory(prefix="orthanc-rbench-") as tmp:
        work = Path(tmp)
        with Destination(work) as dest:
            nodes = {"DEST": ["DEST", "127.0.0.1", dest.port], "BENCH": ["BENCH", "127.0.0.1", 104]}
            extra = {"DicomModalities": nodes, "DicomAlwaysAllowMove": True, "DicomAlwaysAllowGet": True}
            with h.orthanc_server(work, extra) as (http_port, dicom_port):
                h.run_storescu("ORTHANC", dicom_port, files, timeout)
                stored = h.instance_count(http_port, None)
                if stored != len(files):
                    raise RuntimeError(f"Orthanc stored {stored} of {len(files)} instances")
                return retrieve_runs(name, "ORTHANC", dicom_port, dest, files, repeat, timeout, problems)


def retrieve_table(rows: list[RetrieveRow]) -> str:
    """Medians, compared with Orthanc in the same run (else with ``ORTHANC_REFERENCE`` for 300 slices)."""
    out = ["| target | method | instances | MB | s (median) | instances/s | MB/s | vs Orthanc | >= Orthanc | runs (s) "
           "|",
           "|---|---|---:|---:|---:|---:|---:|---:|:---:|---|"]
    for r in rows:
        ref = next((o.wall for o in rows if o.target.startswith("Orthanc") and o.method == r.method), None)
        vs, ok = "-", "-"
        if ref is not None or r.instances == REFERENCE_SLICES:
            ref_s = ref if ref is not None else ORTHANC_REFERENCE[r.method]
            vs = f"{ref_s / r.wall:.2f}x" + ("" if ref is not None else " (ref.)")
            ok = "yes" if r.wall <= ref_s else "**no**"
        out.append(f"| {r.target} | {r.method} | {r.instances} | {r.nbytes / 1e6:.1f} | {r.wall:.2f} | "
                   f"{r.instances / r.wall:.1f} | {r.nbytes / 1e6 / r.wall:.1f} | {vs} | {ok} | "
                   f"{', '.join(f'{w:.2f}' for w in r.walls)} |")
    return "\n".join(out)
