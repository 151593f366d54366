"""Shared fixtures: a real index on SQLite and (with RISHUB_TEST_PG) PostgreSQL, real listeners on
loopback, DCMTK clients, and pydicom's bundled test files."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from hub.app import Hub
from hub.settings import Settings, load

PG_ADMIN_URL = os.environ.get("RISHUB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DCMTK_BIN = Path("/usr/bin")


def backends() -> list[str]:
    out = ["sqlite"]
    if os.environ.get("RISHUB_TEST_PG"):
        out.append("postgresql")
    return out


@pytest.fixture(params=backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A throwaway database: a SQLite file, or a fresh PostgreSQL database dropped afterwards (a copy
    of a template that the migrations brought to head once per session: same schema, less time)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.db'}"
        return
    yield from _pg_database(template=request.getfixturevalue("pg_template"))


def _sqlalchemy_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"


def _pg_database(template: str | None = None) -> Iterator[str]:
    import psycopg

    name = f"rishub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _sqlalchemy_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database upgraded to the head revision by the Alembic migrations, for copying."""
    import psycopg

    from hub.store.db import upgrade

    name = f"rishub_tmpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(_sqlalchemy_url(name))
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:  # no session may stay on a template
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database, for tests that are only about PostgreSQL."""
    if not os.environ.get("RISHUB_TEST_PG"):
        pytest.skip("RISHUB_TEST_PG not set")
    yield from _pg_database()


def make_settings(data_dir: Path, db_url: str, **env: str) -> Settings:
    environ = {
        "RISHUB_DATA_DIR": str(data_dir),
        "RISHUB_DATABASE_URL": db_url,
        "RISHUB_HTTP_PORT": "0",
        "RISHUB_DICOM_PORT": "0",
        "RISHUB_HL7_PORT": "0",
        "RISHUB_ADMIN_PASSWORD": "admin-secret-pw",
        # Header parsing in worker processes costs a process start per hub; tests that cover it ask for it.
        "RISHUB_STORAGE_PARSE_WORKERS": "0",
        **env,
    }
    return load(environ=environ)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path / "data", db_url)


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    h = Hub.open(settings, upgrade_schema=True)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def listeners(hub: Hub):  # noqa: ANN201
    """DIMSE and HTTP listeners of ``hub`` on free loopback ports."""
    from interfaces.serve import Listeners

    ls = Listeners(hub)
    ls.start()
    try:
        yield ls
    finally:
        ls.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dcmtk(tool: str) -> str:
    """Path of a DCMTK tool (not pynetdicom's same-named scripts in the venv)."""
    path = DCMTK_BIN / tool
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"DCMTK {tool} missing: .ci/run installs dcmtk")
        pytest.skip(f"DCMTK {tool} not installed (apt-get install dcmtk)")
    return str(path)


def dcmtk_env() -> dict[str, str]:
    return {**os.environ, "TCP_NODELAY": "1"}


@pytest.fixture
def test_file():  # noqa: ANN201
    def get(name: str) -> Path:
        path = TEST_FILES / name
        assert path.exists(), path
        return path

    return get


@pytest.fixture
def copy_tree(tmp_path: Path):  # noqa: ANN201
    def copy(names: list[str]) -> Path:
        out = tmp_path / "in"
        out.mkdir(exist_ok=True)
        for n in names:
            shutil.copy(TEST_FILES / n, out / n)
        return out

    return copy


@pytest.fixture(scope="session")
def r4():  # noqa: ANN201 - tests.fhir_validator.R4Validator
    """The npm FHIR R4 validator (``tests/fhir_validate.sh`` installs it; ``.ci/run`` does). Skipped when
    absent, a failure in CI."""
    from tests.fhir_validator import R4Validator

    try:
        validator = R4Validator()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield validator
    finally:
        validator.close()
