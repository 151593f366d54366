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
import base64
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VENV_BIN = ROOT / ".venv" / "bin"
RISHUB = VENV_BIN / "rishub" if (VENV_BIN / "rishub").exists() else Path(shutil.which("rishub") or "rishub")
STORESCU = Path("/usr/bin/storescu")  # by full path: pynetdicom installs a same-named script in the venv
ORTHANC = Path("/usr/sbin/Orthanc")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
MARKER = "<!-- results: newest first; `bench/ingest.py --write` inserts a section below -->"
ADMIN_PASSWORD = "bench-admin-password"
ORTHANC_REFERENCE = (137.0, 72.0)  # instances/s, MB/s: Orthanc 1.10 (Debian) on this 2-core machine
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk reads it: no Nagle delay on each DIMSE message


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


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port that is free now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM the process we started, SIGKILL it if it does not stop in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def http_json(url: str, auth: tuple[str, str] | None = None, timeout: float = 10) -> object:
    """GET ``url`` and decode its JSON body."""
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def instance_count(http_port: int, auth: tuple[str, str] | None) -> int:
    """``CountInstances`` of an Orthanc-compatible ``/statistics``."""
    stats = http_json(f"http://127.0.0.1:{http_port}/statistics", auth)
    return int(stats["CountInstances"])  # type: ignore[index]


def run_storescu(aet: str, port: int, files: list[Path], timeout: float) -> float:
    """Send every file over one association; return the wall time of the storescu process."""
    cmd = [str(STORESCU), "-aec", aet, "-aet", "BENCHSCU", "127.0.0.1", str(port), *map(str, files)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, timeout=timeout, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"storescu exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return wall


# --------------------------------------------------------------------------- the series


def series(slices: int) -> list[Path]:
    """The cached synthetic CT series (deterministic), generated once per slice count."""
    cache = Path(tempfile.gettempdir()) / f"rishub-bench-ct-{slices}"
    done = cache.with_name(cache.name + ".complete")  # outside the folder that `rishub import` walks
    if not done.exists() or len(list(cache.glob("CT*.dcm"))) != slices:
        log(f"generating {slices} slices into {cache}")
        shutil.rmtree(cache, ignore_errors=True)
        code = (
            "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from tests.synthetic import write_series; write_series(Path(sys.argv[2]), int(sys.argv[3]))"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(ROOT), str(cache), str(slices)],
            check=True, timeout=1800,
        )
        done.write_text("ok\n")
    files = sorted(cache.glob("CT*.dcm"))
    if len(files) != slices:
        raise RuntimeError(f"{cache} holds {len(files)} files, expected {slices}; delete it and rerun")
    return files


# --------------------------------------------------------------------------- PostgreSQL


class Postgres:
    """Creates and drops one throw-away database per run on the server of ``admin_url``."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url  # a libpq URL (postgresql://user@host:port/dbname)
        self._n = 0

    def _connect(self):  # noqa: ANN202 - psycopg.Connection
        import psycopg

        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)

    def version(self) -> str:
        with self._connect() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """Yield the SQLAlchemy URL of a fresh, empty database; drop it afterwards."""
        from psycopg.conninfo import conninfo_to_dict

        self._n += 1
        name = f"rishub_bench_{os.getpid()}_{self._n}"
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            info = conninfo_to_dict(self.admin_url)
            user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", "5432")
            password = f":{info['password']}" if info.get("password") else ""
            yield f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"
        finally:
            with self._connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- rishub


@contextlib.contextmanager
def hub_config(work: Path, database_url: str | None) -> Iterator[tuple[Path, int, int]]:
    """Write a config with a fresh data dir and create its schema. Yields (file, http port, dicom port)."""
    data = work / "data"
    http_port, dicom_port = free_port(), free_port()
    lines = [f'data_dir = "{data}"']
    if database_url:
        lines.append(f'database_url = "{database_url}"')
    lines += ["", "[http]", f"port = {http_port}", "", "[dicom]", f"port = {dicom_port}", ""]
    cfg = work / "rishub.toml"
    cfg.write_text("\n".join(lines))
    data.mkdir()  # `rishub db upgrade` on SQLite does not create the data dir itself
    subprocess.run(  # PostgreSQL needs it; on SQLite it keeps schema creation out of the import timing
        [str(RISHUB), "db", "upgrade", "--config", str(cfg)],
        env=hub_env(), check=True, capture_output=True, timeout=120,
    )
    yield cfg, http_port, dicom_port


HUB_OVERRIDES: dict[str, str] = {}  # --hub-env: settings changed from the defaults for a diagnostic run


def hub_env() -> dict[str, str]:
    """Environment of the rishub processes: defaults, a fixed admin password, and ``--hub-env``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISHUB_")}
    env["RISHUB_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    env.update(HUB_OVERRIDES)
    return env


@contextlib.contextmanager
def rishub_server(cfg: Path, http_port: int, work: Path, timeout: float = 90) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``rishub serve`` until its start-up line; stop it afterwards."""
    logf = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(RISHUB), "serve", "--config", str(cfg)],
        env=hub_env(), stdout=subprocess.PIPE, stderr=logf, cwd=work,
    )
    ready = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(b"rishub "):
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (work / "serve.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"rishub serve did not start (rc={proc.poll()}):\n{tail}")
        wait_port(http_port, 10, proc)
        yield proc
    finally:
        stop(proc)
        logf.close()


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


def orthanc_version() -> str:
    out = subprocess.run([str(ORTHANC), "--version"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if first else "?"


def bench_orthanc(files: list[Path], timeout: float) -> float:
    """One ``storescu`` run against a fresh Orthanc (default settings, no plugins)."""
    with tempfile.TemporaryDirectory(prefix="orthanc-bench-") as tmp:
        work = Path(tmp)
        http_port, dicom_port = free_port(), free_port()
        cfg = {
            "Name": "bench",
            "StorageDirectory": str(work / "storage"),
            "IndexDirectory": str(work / "index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
        }
        (work / "orthanc.json").write_text(json.dumps(cfg, indent=2))
        logf = open(work / "orthanc.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([str(ORTHANC), str(work / "orthanc.json")], stdout=logf, stderr=subprocess.STDOUT,
                                cwd=work, env=DCMTK_ENV)
        try:
            wait_port(http_port, 60, proc)
            deadline = time.monotonic() + 30
            while True:  # the HTTP port opens before the DICOM server in some versions: ask /system
                try:
                    http_json(f"http://127.0.0.1:{http_port}/system")
                    break
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            wait_port(dicom_port, 30, proc)
            wall = run_storescu("ORTHANC", dicom_port, files, timeout)
            stored = instance_count(http_port, None)
        finally:
            stop(proc)
            logf.close()
        if stored != len(files):
            raise RuntimeError(f"Orthanc stored {stored} of {len(files)} instances")
        return wall


# --------------------------------------------------------------------------- report


def machine(pg_version: str | None, orthanc: str | None) -> dict[str, str]:
    """What the numbers depend on."""
    from importlib.metadata import version

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    dcmtk = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(STORESCU), "--version"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"v(\d+\.\d+\.\d+)", out)
        dcmtk = m.group(1) if m else "?"
    info = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pydicom": version("pydicom"),
        "pynetdicom": version("pynetdicom"),
        "SQLAlchemy": version("SQLAlchemy"),
        "psycopg": version("psycopg"),
        "dcmtk": dcmtk,
    }
    if pg_version:
        info["PostgreSQL"] = pg_version
    if orthanc:
        info["Orthanc"] = orthanc
    return info


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
    lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "date"))
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


def write_results(text: str) -> None:
    """Insert ``text`` as the newest section of RESULTS.md (creating the file when needed)."""
    current = RESULTS.read_text() if RESULTS.exists() else ""
    if MARKER not in current:
        current = INTRO
    head, _, tail = current.partition(MARKER)
    RESULTS.write_text(head + MARKER + "\n\n" + text.rstrip() + "\n" + (("\n" + tail.strip() + "\n") if tail.strip()
                                                                         else ""))


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
    p.add_argument("--skip-pg", action="store_true", help="no PostgreSQL runs")
    p.add_argument("--skip-orthanc", action="store_true", help="no Orthanc reference run")
    p.add_argument("--skip-import", action="store_true", help="no `rishub import` runs")
    p.add_argument("--pg-url", default=os.environ.get("RISHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
                   help="libpq URL of a role that may CREATE DATABASE")
    p.add_argument("--timeout", type=float, default=600, help="limit of each storescu/import step in seconds")
    p.add_argument("--hub-env", action="append", default=[], metavar="RISHUB_KEY=VALUE",
                   help="change a hub setting for a diagnostic run, e.g. RISHUB_STORAGE_FSYNC=false (repeatable)")
    p.add_argument("--write", action="store_true", help="add a dated section to bench/RESULTS.md")
    args = p.parse_args(argv)
    for item in args.hub_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("RISHUB_"):
            p.error(f"--hub-env wants RISHUB_KEY=VALUE, not {item!r}")
        HUB_OVERRIDES[key] = value
    if args.slices < 1 or args.repeat < 1:
        p.error("--slices and --repeat must be at least 1")
    if not STORESCU.exists():
        p.error(f"{STORESCU} not found: install dcmtk")

    files = series(args.slices)
    nbytes = sum(f.stat().st_size for f in files)
    log(f"series: {len(files)} files, {nbytes / 1e6:.1f} MB")

    skipped: list[str] = []
    pg: Postgres | None = None
    pg_version = None
    if not args.skip_pg:
        pg = Postgres(args.pg_url)
        try:
            pg_version = pg.version()
        except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
            skipped.append(f"PostgreSQL ({type(exc).__name__}: {exc})".splitlines()[0])
            pg = None
    else:
        skipped.append("PostgreSQL (--skip-pg)")
    orthanc = None
    if args.skip_orthanc:
        skipped.append("Orthanc (--skip-orthanc)")
    elif not ORTHANC.exists():
        skipped.append(f"Orthanc (not installed at {ORTHANC})")
    else:
        orthanc = orthanc_version()

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
        write_results(text)
        log(f"wrote {RESULTS}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
