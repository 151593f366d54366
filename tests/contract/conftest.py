"""Fixtures for the HTTP contract tests: the hub's HTTP API on loopback (``api``) and, as the
reference, a real Orthanc 1.10 started by the test session (``orthanc``; skipped only when the
Debian ``orthanc`` package is absent, which CI installs)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ORTHANC = Path("/usr/sbin/Orthanc")
ADMIN_PASSWORD = "admin-secret-pw"  # tests.conftest.make_settings


class Http:
    """A small HTTP client bound to one base URL (``requests`` session, optional Basic auth)."""

    def __init__(self, base: str, auth: tuple[str, str] | None = None) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if auth:
            self.session.auth = auth

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        try:
            return self.session.request(method, self.url(path), **kwargs)
        except requests.ConnectionError:
            if method not in ("GET", "HEAD", "PUT", "DELETE"):
                raise
            # a keep-alive connection the server closed while idle (Orthanc does): once more, anew
            return self.session.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def json(self, path: str, **kwargs: Any) -> Any:
        """GET ``path`` and return its JSON; fails the test on a non-2xx status."""
        resp = self.get(path, **kwargs)
        assert resp.ok, f"GET {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()

    def upload(self, path: Path) -> dict[str, Any]:
        """POST one DICOM file to ``/instances``; returns Orthanc's answer."""
        resp = self.post("/instances", data=path.read_bytes(), headers={"Content-Type": "application/dicom"})
        assert resp.ok, f"upload {path.name}: {resp.status_code} {resp.text[:300]}"
        return resp.json()


class OrthancRef(Http):
    """The reference Orthanc: one process per test session, emptied by :meth:`clear`."""

    def __init__(self, base: str, dicom_port: int, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(base)
        self.dicom_port = dicom_port
        self.proc = proc

    def clear(self) -> None:
        for pid in self.json("/patients"):
            self.delete(f"/patients/{pid}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancRef]:
    if not ORTHANC.exists():
        if os.environ.get("CI"):
            pytest.fail("Orthanc missing: .ci/run installs the orthanc package")
        pytest.skip("Orthanc not installed (apt-get install orthanc)")
    work = tmp_path_factory.mktemp("orthanc")
    http_port, dicom_port = _free_port(), _free_port()
    cfg = {
        "Name": "reference",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "StableAge": 1,
    }
    (work / "orthanc.json").write_text(json.dumps(cfg))
    log = open(work / "orthanc.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(ORTHANC), str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=work)
    ref = OrthancRef(f"http://127.0.0.1:{http_port}", dicom_port, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if ref.get("/system", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not start: {(work / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield ref
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def orthanc(orthanc_server: OrthancRef) -> OrthancRef:
    """The reference Orthanc, empty at the start of the test."""
    orthanc_server.clear()
    return orthanc_server


@pytest.fixture
def api(listeners: Any) -> Http:
    """The hub's HTTP API as the bootstrap admin."""
    return Http(f"http://127.0.0.1:{listeners.http.port}", ("admin", ADMIN_PASSWORD))


VOLATILE = {"LastUpdate", "FileUuid", "IsStable"}


def stable_view(value: Any) -> Any:
    """``value`` without the fields that differ between two servers for the same files (times, blob
    names, stability), for comparing the hub's JSON with Orthanc's."""
    if isinstance(value, dict):
        return {k: stable_view(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable_view(v) for v in value]
    return value
