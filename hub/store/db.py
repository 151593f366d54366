"""Database engine for SQLite (embedded default) and PostgreSQL (psycopg 3), and schema upgrades.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a commit is durable when it returns;
write transactions start with ``BEGIN IMMEDIATE`` and are serialized in-process by a lock, so
concurrent writers queue instead of failing with "database is locked" on lock upgrade.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def dumps(value: Any) -> str:  # noqa: ANN401 - JSON-able
    """JSON text as the index stores it (compact, Unicode kept): one writer for every table."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` for psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Database:
    """Owns the engine; hands out read connections and serialized write transactions."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            db_path = make_url(self.url).database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url,
                connect_args={"check_same_thread": False, "timeout": 60},
                pool_size=pool_size,
                max_overflow=20,
                hide_parameters=True,  # errors are logged: never with patient data in them
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            # No pre-ping: it costs a round trip per transaction; a dropped connection fails one
            # unit of work (reported to the client as out-of-resources) and is replaced.
            self.engine = create_engine(
                self.url, pool_size=pool_size, max_overflow=20, pool_recycle=1800, hide_parameters=True
            )
        self._writer = self.engine.execution_options(rishub_write=True)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One unit of work: commits on success, rolls back on any exception."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self._writer.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    def ping(self) -> None:
        with self.read() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    # DICOM wildcard matching is case-sensitive (names match their upper-cased *_norm columns),
    # and a case-sensitive LIKE 'ABC%' can use the column's index.
    cur.execute("PRAGMA case_sensitive_like=ON")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get("rishub_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


# --------------------------------------------------------------------------- migrations


def alembic_config(url: str):  # noqa: ANN201 - alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (``rishub db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
