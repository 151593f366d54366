"""CORS for a browser viewer on another origin: preflight answered without credentials, responses
carry the allow headers for the configured origin only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hub.app import Hub
from interfaces.serve import Listeners
from tests.conftest import make_settings

VIEWER = "http://viewer.example:3000"


@pytest.fixture
def cors_base(tmp_path: Path, db_url: str) -> Iterator[str]:
    hub = Hub.open(make_settings(tmp_path / "data", db_url, RISHUB_HTTP_CORS_ORIGINS=VIEWER), upgrade_schema=True)
    ls = Listeners(hub)
    ls.start()
    try:
        yield f"http://127.0.0.1:{ls.http.port}"
    finally:
        ls.stop()
        hub.close()


def test_preflight_and_allowed_origin(cors_base: str) -> None:
    pre = requests.options(f"{cors_base}/dicom-web/studies", headers={
        "Origin": VIEWER, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, accept"}, timeout=10)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == VIEWER
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    resp = requests.get(f"{cors_base}/dicom-web/studies", headers={"Origin": VIEWER},
                        auth=("admin", "admin-secret-pw"), timeout=10)
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == VIEWER
    assert "Warning" in resp.headers["Access-Control-Expose-Headers"]
    unauth = requests.get(f"{cors_base}/dicom-web/studies", headers={"Origin": VIEWER}, timeout=10)
    assert unauth.status_code == 401 and unauth.headers["Access-Control-Allow-Origin"] == VIEWER


def test_other_origins_get_nothing(cors_base: str) -> None:
    pre = requests.options(f"{cors_base}/dicom-web/studies", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}, timeout=10)
    assert pre.status_code == 401 and "Access-Control-Allow-Origin" not in pre.headers
    resp = requests.get(f"{cors_base}/dicom-web/studies", headers={"Origin": "http://evil.example"},
                        auth=("admin", "admin-secret-pw"), timeout=10)
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers
