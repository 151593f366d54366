"""HL7 order benchmark: ORM^O01 (NW, v2.3.1 with ZDS) -> AA over MLLP against ``rishub serve``, on one
connection and on 4 concurrent connections; each AA means the order and its worklist item committed.
SQLite, then PostgreSQL. Target (issue 6): at least 300 orders/s committed and acknowledged.
Usage: ``.venv/bin/python bench/hl7.py [--orders 2000] [--skip-pg] [--write]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import harness as h

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interfaces.hl7.client import MllpClient  # noqa: E402

MARKER = "<!-- hl7 results: newest first; `bench/hl7.py --write` inserts a section below -->"


def order(n: int, run: str) -> bytes:
    """A distinct new order: own control id, accession, RP/SPS ids and Study Instance UID."""
    return ("MSH|^~\\&|RIS|RADIOLOGY|HUB|PACS|20250314081502||ORM^O01|" + f"{run}{n:08d}" + "|P|2.3.1||||||8859/1\r"
            f"PID|1||P{n % 5000:06d}^^^HOSP_A&2.999.1.1&ISO^MR||M\xdcLLER^J\xd6RG^^^DR.||19670523|M\r"
            f"PV1|1|O|RAD^CT1^01^HOSP_A|||||1234567^SCHMIDT^ANNA^^^DR.|||||||||||V{n:08d}^^^HOSP_A^VN\r"
            f"ORC|NW|PLC-{n}^EHR|FIL-{n}^RIS||SC||^^^20250314{9 + n % 8:02d}3000^^R||20250314081500|||"
            "7654321^WEBER^KLAUS^^^DR.||||||||CTSCANNER1\r"
            f"OBR|1|PLC-{n}^EHR|FIL-{n}^RIS|CTCH^CT chest^99RIS^CTCH_LD^Chest low-dose^99RIS|||||||||||"
            f"7654321^WEBER^KLAUS^^^DR.||A{run}{n:08d}|RP{n:08d}|SPS{n:08d}||||CT|||^^^20250314093000^^R\r"
            f"ZDS|2.25.{run_int(run)}{n:010d}^100^Application^DICOM\r").encode("latin-1")


def run_int(run: str) -> int:
    return int.from_bytes(run.encode(), "big") % 10**12


def send_all(port: int, messages: list[bytes], connections: int) -> float:
    """Send ``messages`` over ``connections`` MLLP connections; seconds until the last AA."""
    chunks = [messages[i::connections] for i in range(connections)]
    errors: list[str] = []

    def worker(chunk: list[bytes]) -> None:
        with MllpClient("127.0.0.1", port, timeout=60) as c:
            for m in chunk:
                ack = c.send(m)
                if b"MSA|AA|" not in ack:
                    errors.append(ack.decode("latin-1")[:200])
                    return

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"not acknowledged: {errors[0]}")
    return wall


@contextlib.contextmanager
def hub(work: Path, database_url: str | None) -> Iterator[int]:
    with h.hub_config(work, database_url) as (cfg, http_port, _dicom):
        port = h.free_port()
        with h.rishub_server(cfg, http_port, work, env={"RISHUB_HL7_PORT": str(port)}):
            h.wait_port(port, 30)
            yield port


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=2000, help="orders per measurement (2000)")
    h.add_common_args(p, "seconds per server start")
    args = p.parse_args()
    h.apply_hub_env(p, args.hub_env)
    skipped: list[str] = []
    pg, pg_version = h.open_postgres(args.pg_url, args.skip_pg, skipped)
    rows: list[tuple[str, str, float, str]] = []
    targets: list[tuple[str, contextlib.AbstractContextManager[str | None]]] = [
        ("rishub SQLite", contextlib.nullcontext(None))]
    if pg is not None:
        targets.append(("rishub PostgreSQL", pg.database()))
    for name, db in targets:
        with db as url, tempfile.TemporaryDirectory(prefix="rishub-bench-hl7-") as tmp:
            with hub(Path(tmp), url) as port:
                send_all(port, [order(n, "W") for n in range(50)], 1)  # warm-up
                for conns, run in ((1, "A"), (4, "B")):
                    wall = send_all(port, [order(n, run) for n in range(args.orders)], conns)
                    rows.append((name, f"ORM^O01 -> AA, {conns} connection{'s' if conns > 1 else ''}",
                                 args.orders / wall, f"{args.orders} orders in {wall:.2f} s"))
                    h.log(f"{name}: {conns} connection(s): {args.orders / wall:.0f} orders/s")
    lines = [f"## HL7 orders {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"{args.orders} distinct ORM^O01 NW orders per row over MLLP (python client, one message in flight per "
             "connection); each AA is sent after the order and its worklist item are committed.", "",
             "| target | measure | orders/s | note |", "|---|---|---:|---|"]
    lines += [f"| {t} | {m} | {v:.0f} | {n} |" for t, m, v, n in rows]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped)]
    info = h.machine(pg_version, None)
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    intro = "# HL7 order benchmark\n\n`bench/hl7.py`: see its docstring.\n\n" + MARKER
    h.publish("\n".join(lines), args.write, MARKER, intro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
