"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.fhir_http import FhirWorld, fhir_world


@pytest.fixture
def fhir(tmp_path: Path, db_url: str, r4: Any) -> Iterator[FhirWorld]:  # noqa: ANN401 - R4Validator
    """(a system/*.cruds client, a factory of clients for other scopes, Patient ids of P1 and P2 with one
    active order each: H-1 and H-2)."""
    with fhir_world(tmp_path, db_url, r4) as world:
        yield world
