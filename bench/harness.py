"""Shared by the benchmarks in ``bench/``: servers (``rishub serve``, Orthanc), throw-away PostgreSQL
databases, the cached synthetic CT series, machine info and ``RESULTS.md`` sections."""

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
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

VENV_BIN = ROOT / ".venv" / "bin"
RISHUB = VENV_BIN / "rishub" if (VENV_BIN / "rishub").exists() else Path(shutil.which("rishub") or "rishub")
# dcmtk by full path: pynetdicom installs same-named scripts in the venv
STORESCU = Path("/usr/bin/storescu")
STORESCP = Path("/usr/bin/storescp")
MOVESCU = Path("/usr/bin/movescu")
GETSCU = Path("/usr/bin/getscu")
ORTHANC = Path("/usr/sbin/Orthanc")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ADMIN_PASSWORD = "bench-admin-password"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # dcmtk reads it: no Nagle delay on each DIMSE message
DEFAULT_PG_URL = os.environ.get("RISHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


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


def open_postgres(url: str, skip: bool, skipped: list[str]) -> tuple[Postgres | None, str | None]:
    """The PostgreSQL helper and server version, or (None, None) with the reason added to ``skipped``."""
    if skip:
        skipped.append("PostgreSQL (--skip-pg)")
        return None, None
    pg = Postgres(url)
    try:
        return pg, pg.version()
    except Exception as exc:  # noqa: BLE001 - reported, the rest still runs
        skipped.append(f"PostgreSQL ({type(exc).__name__}: {exc})".splitlines()[0])
        return None, None


# --------------------------------------------------------------------------- rishub

HUB_OVERRIDES: dict[str, str] = {}  # --hub-env: settings changed from the defaults for a diagnostic run


def add_common_args(p: argparse.ArgumentParser, timeout_help: str) -> None:
    """Options every benchmark takes: --skip-pg, --skip-orthanc, --pg-url, --timeout, --hub-env, --write."""
    p.add_argument("--skip-pg", action="store_true", help="no PostgreSQL runs")
    p.add_argument("--skip-orthanc", action="store_true", help="no Orthanc reference run")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="libpq URL of a role that may CREATE DATABASE")
    p.add_argument("--timeout", type=float, default=600, help=timeout_help)
    p.add_argument("--hub-env", action="append", default=[], metavar="RISHUB_KEY=VALUE",
                   help="change a hub setting for a diagnostic run, e.g. RISHUB_STORAGE_FSYNC=false (repeatable)")
    p.add_argument("--write", action="store_true", help="add a dated section to bench/RESULTS.md")


def apply_hub_env(p: argparse.ArgumentParser, items: list[str]) -> None:
    """--hub-env RISHUB_KEY=VALUE into HUB_OVERRIDES (or a usage error)."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("RISHUB_"):
            p.error(f"--hub-env wants RISHUB_KEY=VALUE, not {item!r}")
        HUB_OVERRIDES[key] = value


def hub_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the rishub processes: defaults, a fixed admin password, ``--hub-env``, ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISHUB_")}
    env["RISHUB_ADMIN_PASSWORD"] = ADMIN_PASSWORD
    env.update(HUB_OVERRIDES)
    env.update(extra or {})
    return env


def index_url(work: Path, database_url: str | None) -> str:
    """The SQLAlchemy URL of the index that :func:`hub_config` set up in ``work``."""
    return database_url or f"sqlite:///{work / 'data' / 'index.db'}"


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
    subprocess.run(  # PostgreSQL needs it; on SQLite it keeps schema creation out of the timings
        [str(RISHUB), "db", "upgrade", "--config", str(cfg)],
        env=hub_env(), check=True, capture_output=True, timeout=120,
    )
    yield cfg, http_port, dicom_port


@contextlib.contextmanager
def rishub_server(cfg: Path, http_port: int, work: Path, timeout: float = 90,
                  env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``rishub serve`` until its start-up line; stop it afterwards. ``env``: extra variables."""
    logf = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(RISHUB), "serve", "--config", str(cfg)],
        env=hub_env(env), stdout=subprocess.PIPE, stderr=logf, cwd=work,
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


# --------------------------------------------------------------------------- Orthanc


def orthanc_version() -> str:
    out = subprocess.run([str(ORTHANC), "--version"], capture_output=True, text=True, timeout=30).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if first else "?"


@contextlib.contextmanager
def orthanc_server(work: Path, extra: dict[str, Any] | None = None) -> Iterator[tuple[int, int]]:
    """A fresh Orthanc (default settings, no plugins, AE ``ORTHANC``, ``extra`` config keys) in ``work``.
    Yields (http port, dicom port)."""
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
        **(extra or {}),
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
        yield http_port, dicom_port
    finally:
        stop(proc)
        logf.close()


def find_orthanc(skip: bool, skipped: list[str]) -> str | None:
    """Orthanc's version when it takes part in this run, else None (the reason added to ``skipped``)."""
    if skip:
        skipped.append("Orthanc (--skip-orthanc)")
    elif not ORTHANC.exists():
        skipped.append(f"Orthanc (not installed at {ORTHANC})")
    else:
        return orthanc_version()
    return None


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


def machine_line(info: dict[str, str]) -> str:
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "date")


def write_results(text: str, marker: str, intro: str, *, at_end: bool = False) -> None:
    """Insert ``text`` as the newest section below ``marker`` in RESULTS.md. A file without the marker
    gets ``intro`` (which ends with the marker) at its start, or at its end when ``at_end``."""
    current = RESULTS.read_text() if RESULTS.exists() else ""
    if marker not in current:
        if not current.strip():
            current = intro
        elif at_end:
            current = current.rstrip() + "\n\n" + intro
        else:
            current = intro.rstrip() + "\n\n" + current.lstrip()
    head, _, tail = current.partition(marker)
    tail = tail.strip()
    RESULTS.write_text(head + marker + "\n\n" + text.rstrip() + "\n" + (("\n" + tail + "\n") if tail else ""))


def publish(text: str, write: bool, marker: str, intro: str) -> None:
    """Print a benchmark's section; with ``--write`` also add it to RESULTS.md (sections at the end)."""
    print(text)
    if write:
        write_results(text, marker, intro, at_end=True)
        log(f"wrote {RESULTS}")
