"""First image of a series that is not in the render cache yet, over HTTP (issue 8: under 300 ms for the
first axial slice of a 400-slice series).

The cached synthetic 512x512 CT series of ``bench/harness.py`` is stored over C-STORE (dcmtk ``storescu``)
into ``rishub serve`` (SQLite). Each run then stores one more slice into the series (a new last-change
stamp, so the cached volume is stale and a new one is assembled) and times ``GET /render/series/{id}/mpr``
of the middle axial slice on a fresh connection, then how long until the whole volume is loaded
(``/info`` ``Complete``). A warm-up request on another series first, so that the kernels are loaded.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import time
from base64 import b64encode
from pathlib import Path

import harness as h

sys.path.insert(0, str(h.ROOT))
from tests.synthetic import ct_slice, write_series  # noqa: E402


def _get(port: int, path: str) -> tuple[int, bytes, float]:
    auth = b64encode(f"admin:{h.ADMIN_PASSWORD}".encode()).decode()
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path, headers={"Authorization": f"Basic {auth}"})
    resp = conn.getresponse()
    body = resp.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return resp.status, body, elapsed


def first_slice(slices: int = 400, runs: int = 5, timeout: float = 600) -> dict[str, float]:
    """p50/max ms of the first axial image of a stale series, and seconds to the complete volume."""
    files = h.series(slices)
    with tempfile.TemporaryDirectory(prefix="rishub-render-") as tmp:
        work = Path(tmp)
        with h.hub_config(work, None) as (cfg, http_port, dicom_port), h.rishub_server(cfg, http_port, work):
            h.run_storescu("RISHUB", dicom_port, files, timeout)
            warm = write_series(work / "warm", 4, seed="render-warm", rows=64, cols=64)
            h.run_storescu("RISHUB", dicom_port, warm, timeout)
            listing = json.loads(_get(http_port, "/series?expand")[1])
            by_count = {s["Instances"].__len__(): s["ID"] for s in listing}
            big, small = by_count[slices], by_count[4]
            status, _, _ = _get(http_port, f"/render/series/{small}/mpr?plane=oblique&normal=1,1,1")
            assert status == 200, status
            firsts, completes = [], []
            for run in range(runs):
                extra = work / f"extra{run}.dcm"
                ct_slice(slices + run).save_as(extra, enforce_file_format=True)
                h.run_storescu("RISHUB", dicom_port, [extra], timeout)
                middle = -((slices + run) // 2) * 1.25  # tests.synthetic: z = -index * thickness
                started = time.perf_counter()
                status, body, elapsed = _get(http_port, f"/render/series/{big}/mpr?plane=axial&position={middle}")
                assert status == 200 and body[:2] == b"\xff\xd8", (status, body[:200])
                firsts.append(elapsed * 1000)
                while not json.loads(_get(http_port, f"/render/series/{big}/info")[1])["Complete"]:
                    time.sleep(0.02)
                completes.append(time.perf_counter() - started)
                h.log(f"run {run + 1}: first axial image {elapsed * 1000:.0f} ms, volume complete "
                      f"{completes[-1]:.2f} s")
    return {"first_p50_ms": statistics.median(firsts), "first_max_ms": max(firsts),
            "complete_p50_s": statistics.median(completes), "slices": slices}


if __name__ == "__main__":
    print(first_slice())
