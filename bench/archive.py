"""ZIP archive benchmark: ``GET /series/{id}/archive`` of the synthetic N-slice CT series, hub beside Orthanc.

The synthetic CT series of the other benchmarks (``tests.synthetic``: 512x512 int16, Explicit VR Little
Endian) with CT-like noise added to its pixel data (``--no-noise``: the plain phantom) is stored with dcmtk
``storescu`` into a fresh ``rishub serve`` (SQLite, then PostgreSQL) and into a fresh Orthanc
(default settings: it deflates every file), then the series archive is downloaded ``--repeat`` times on
loopback, reading the body as it streams in. A run is the wall time from sending the request to the last
byte; MB/s is the series' DICOM bytes (10^6) over that time. Each ZIP's end record is checked to list
every slice.
Usage: ``.venv/bin/python bench/archive.py [--slices 300] [--repeat 3] [--no-noise] [--skip-pg] [--skip-orthanc]
[--write]``
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import harness as h

MARKER = "<!-- archive results: newest first; `bench/archive.py --write` inserts a section below -->"
ORTHANC_REFERENCE = 13.0  # MB/s: Orthanc 1.10 (Debian) on the 2-core machine of the issue
Db = Callable[[], contextlib.AbstractContextManager[str | None]]


@dataclass
class Row:
    target: str
    walls: list[float] = field(default_factory=list)
    zip_bytes: int = 0
    first_byte: list[float] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)


def noisy_series(slices: int) -> list[Path]:
    """The synthetic series with CT-like noise (sigma 20 HU, fixed seeds) added to its pixel data, cached
    in the temp dir. The plain phantom (flat regions) deflates ~100:1 at hundreds of MB/s, which real
    CT data never does (~2:1 at a few tens of MB/s): only a noisy series shows what compression costs."""
    cache = Path(tempfile.gettempdir()) / f"rishub-bench-ct-noisy-{slices}"
    done = cache.with_name(cache.name + ".complete")
    if not done.exists() or len(list(cache.glob("CT*.dcm"))) != slices:
        h.log(f"generating {slices} noisy slices into {cache}")
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        sys.path.insert(0, str(h.ROOT))
        import numpy as np

        from tests.synthetic import ct_slice

        for i in range(slices):
            ds = ct_slice(i, seed="ct-noisy")
            pixels = np.frombuffer(ds.PixelData, dtype=np.int16).astype(np.int32)
            pixels += np.rint(np.random.default_rng(i).normal(0, 20, pixels.size)).astype(np.int32)
            ds.PixelData = np.clip(pixels, -32768, 32767).astype(np.int16).tobytes()
            ds.save_as(cache / f"CT{i:05d}.dcm", enforce_file_format=True)
        done.write_text("ok\n")
    return sorted(cache.glob("CT*.dcm"))


def orthanc_id(*parts: str) -> str:
    """Orthanc's public id (SHA-1 of the '|'-joined identifiers, in five dash-separated groups)."""
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def series_id(first: Path) -> str:
    import pydicom

    ds = pydicom.dcmread(first, stop_before_pixels=True)
    return orthanc_id(str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))


def zip_entries(tail: bytes) -> int:
    """Number of files in a ZIP from its last bytes (end of central directory, ZIP64 one if present)."""
    end = tail.rfind(b"PK\x05\x06")
    if end < 0:
        raise RuntimeError("no end of central directory record: truncated ZIP")
    count = struct.unpack_from("<H", tail, end + 10)[0]
    if count == 0xFFFF:
        z64 = tail.rfind(b"PK\x06\x06", 0, end)
        count = struct.unpack_from("<Q", tail, z64 + 32)[0]
    return int(count)


def download(port: int, path: str, auth: tuple[str, str] | None, timeout: float) -> tuple[float, float, int, int]:
    """GET ``path`` on a fresh connection, reading the body as it arrives.
    Returns (seconds to the last byte, seconds to the first byte, bytes, files listed in the ZIP)."""
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {resp.read()[:300]!r}")
        size, tail, first = 0, b"", 0.0
        while chunk := resp.read1(1 << 20):
            if not size:
                first = time.perf_counter() - started
            size += len(chunk)
            tail = (tail + chunk)[-(1 << 16):]
        wall = time.perf_counter() - started
    finally:
        conn.close()
    return wall, first, size, zip_entries(tail)


def runs(row: Row, port: int, path: str, auth: tuple[str, str] | None, files: int, args: argparse.Namespace,
         nbytes: int) -> Row:
    for i in range(args.repeat):
        wall, first, size, entries = download(port, path, auth, args.timeout)
        if entries != files:
            raise RuntimeError(f"{row.target}: the ZIP lists {entries} files, expected {files}")
        row.walls.append(wall)
        row.first_byte.append(first)
        row.zip_bytes = size
        h.log(f"{row.target} run {i + 1}/{args.repeat}: {wall:.2f} s = {nbytes / wall / 1e6:.1f} MB/s "
              f"(first byte after {first * 1000:.0f} ms, ZIP {size / 1e6:.1f} MB)")
    return row


def bench_orthanc(name: str, files: list[Path], sid: str, nbytes: int, args: argparse.Namespace) -> Row:
    with tempfile.TemporaryDirectory(prefix="orthanc-bench-") as tmp, h.orthanc_server(Path(tmp)) as (http, dicom):
        h.run_storescu("ORTHANC", dicom, files, args.timeout)
        if h.instance_count(http, None) != len(files):
            raise RuntimeError("Orthanc did not store the whole series")
        return runs(Row(name), http, f"/series/{sid}/archive", None, len(files), args, nbytes)


def bench_hub(name: str, db: Db, files: list[Path], sid: str, nbytes: int, args: argparse.Namespace) -> Row:
    auth = ("admin", h.ADMIN_PASSWORD)
    with tempfile.TemporaryDirectory(prefix="rishub-bench-") as tmp, db() as url:
        work = Path(tmp)
        with h.hub_config(work, url) as (cfg, http, dicom), h.rishub_server(cfg, http, work):
            h.run_storescu("RISHUB", dicom, files, args.timeout)
            if h.instance_count(http, auth) != len(files):
                raise RuntimeError("rishub did not store the whole series")
            return runs(Row(name), http, f"/series/{sid}/archive", auth, len(files), args, nbytes)


def table(rows: list[Row], nbytes: int) -> str:
    ref = next((r.wall for r in rows if r.target.startswith("Orthanc")), None)
    out = [
        "| target | ZIP MB | s (median) | MB/s | first byte (ms) | vs Orthanc | runs (s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        vs = f"{ref / r.wall:.1f}x" if ref else "-"
        out.append(
            f"| {r.target} | {r.zip_bytes / 1e6:.1f} | {r.wall:.2f} | {nbytes / r.wall / 1e6:.1f} | "
            f"{statistics.median(r.first_byte) * 1000:.0f} | {vs} | {', '.join(f'{w:.2f}' for w in r.walls)} |"
        )
    return "\n".join(out)


def section(rows: list[Row], nbytes: int, info: dict[str, str], args: argparse.Namespace, skipped: list[str],
            errors: list[str]) -> str:
    lines = [f"## Archive {info['date']}", ""]
    lines.append(
        f"`GET /series/{{id}}/archive` of the {args.slices}-slice CT series ({nbytes / 1e6:.1f} MB of DICOM, 512x512 "
        f"int16, Explicit VR LE, {'plain phantom' if args.no_noise else 'with CT-like noise'}), stored first with "
        f"`storescu`; median of {args.repeat} download(s) on loopback; MB/s = DICOM MB / seconds to the last byte; "
        "vs Orthanc in the same run."
    )
    lines += ["", table(rows, nbytes), ""]
    if h.HUB_OVERRIDES:
        lines += ["Hub settings changed from the defaults: "
                  + ", ".join(f"`{k}={v}`" for k, v in h.HUB_OVERRIDES.items()), ""]
    if skipped:
        lines += ["Skipped: " + "; ".join(skipped), ""]
    if errors:
        lines += ["Failed: " + "; ".join(errors), ""]
    lines += [h.machine_line(info), ""]
    return "\n".join(lines)


INTRO = f"""# Archive benchmark

`bench/archive.py` stores the synthetic CT series (default 300 slices of 512x512 int16, the generator of the
ingest benchmark, with CT-like Gaussian noise of 20 HU added to the pixel data; cached in the temp dir as
`rishub-bench-ct-noisy-<N>/`) with `storescu` into a fresh `rishub serve` (SQLite index, then PostgreSQL) and
into a fresh Orthanc 1.10 (Debian package, default settings), then downloads `GET /series/{{id}}/archive` from
each, `--repeat` times, reading the ZIP as it streams in; the end record of each ZIP is checked. Orthanc
deflates every file (~{ORTHANC_REFERENCE:.0f} MB/s on the issue's 2-core machine); the hub streams the files
stored (pixel data barely compresses). The noise matters: the plain phantom (`--no-noise`) is mostly flat
regions and deflates ~100:1 at hundreds of MB/s, which no real image does. MB = 10^6 bytes of DICOM files.

```sh
.venv/bin/python bench/archive.py --write
.venv/bin/python bench/archive.py --slices 50 --repeat 1 --skip-pg   # quick
```

Options: `--slices N` (300), `--repeat N` (3), `--no-noise`, `--skip-pg`, `--skip-orthanc`, `--pg-url URL`,
`--timeout S`, `--hub-env RISHUB_KEY=VALUE`, `--write`.

{MARKER}
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=300, help="slices of the synthetic CT series (300)")
    p.add_argument("--repeat", type=int, default=3, help="downloads per target; the median is reported (3)")
    p.add_argument("--no-noise", action="store_true",
                   help="the plain phantom series of the ingest benchmark (deflates ~100:1) instead of a noisy one")
    h.add_common_args(p, "limit of each storescu step and download in seconds")
    args = p.parse_args(argv)
    h.apply_hub_env(p, args.hub_env)
    if args.slices < 1 or args.repeat < 1:
        p.error("--slices and --repeat must be at least 1")
    if not h.STORESCU.exists():
        p.error(f"{h.STORESCU} not found: install dcmtk")

    files = h.series(args.slices) if args.no_noise else noisy_series(args.slices)
    nbytes = sum(f.stat().st_size for f in files)
    sid = series_id(files[0])
    h.log(f"series {sid}: {len(files)} files, {nbytes / 1e6:.1f} MB")
    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    orthanc = h.find_orthanc(args.skip_orthanc, skipped)

    targets: list[tuple[str, Callable[[str], Row]]] = []
    if orthanc:
        targets.append((f"Orthanc {orthanc}", lambda n: bench_orthanc(n, files, sid, nbytes, args)))
    targets.append(("rishub SQLite", lambda n: bench_hub(n, lambda: contextlib.nullcontext(None), files, sid,
                                                         nbytes, args)))
    if pg is not None:
        targets.append(("rishub PostgreSQL", lambda n: bench_hub(n, pg.database, files, sid, nbytes, args)))
    rows: list[Row] = []
    errors: list[str] = []
    for name, run in targets:
        try:
            rows.append(run(name))
        except Exception as exc:  # noqa: BLE001 - reported; the other targets still run
            h.log(f"{name} FAILED: {type(exc).__name__}: {exc}")
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    info = h.machine(pg_version, orthanc)
    text = section(rows, nbytes, info, args, skipped, errors)
    h.publish(text, args.write, MARKER, INTRO)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
