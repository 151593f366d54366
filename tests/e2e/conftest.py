"""Fixtures of the end-to-end tests: OHIF's dist served on loopback, a hub whose CORS admits that origin,
and a headless chromium."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.app import Hub
from interfaces.serve import Listeners
from tests.conftest import make_settings
from tests.e2e.browser import Journal, start_chromium
from tests.e2e.ohif_server import OhifServer, ohif_dist

ADMIN = ("admin", "admin-secret-pw")  # tests.conftest.make_settings


@dataclass
class Site:
    hub: Hub
    hub_base: str  # http://127.0.0.1:PORT of the hub's HTTP listener
    viewer: str  # OHIF's origin


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[Site]:
    """OHIF on one loopback port, the hub on another (so a cross-origin viewer, as deployed), the hub's
    ``[http] cors_origins`` set to OHIF's origin and OHIF's data source set to the hub's ``/dicom-web``."""
    ohif = OhifServer(ohif_dist())
    hub = Hub.open(make_settings(tmp_path / "data", db_url, RISHUB_HTTP_CORS_ORIGINS=ohif.origin),
                   upgrade_schema=True)
    listeners = Listeners(hub)
    listeners.start()
    hub_base = f"http://127.0.0.1:{listeners.http.port}"
    ohif.configure(f"{hub_base}/dicom-web", ":".join(ADMIN))
    ohif.start()
    try:
        yield Site(hub, hub_base, ohif.origin)
    finally:
        ohif.stop()
        listeners.stop()
        hub.close()


@pytest.fixture
def browser() -> Iterator[tuple[Any, Journal]]:
    driver = start_chromium()
    try:
        yield driver, Journal(driver)
    finally:
        driver.quit()
