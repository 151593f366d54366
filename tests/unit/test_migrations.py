"""The Alembic migrations produce exactly the models' schema (no create_all anywhere)."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from hub.store import order_models  # noqa: F401  (registers the order tables on Base.metadata)
from hub.store.db import head_revision, upgrade
from hub.store.models import Base

ROOT = Path(__file__).resolve().parents[2]


def test_migrations_match_models(db_url: str):
    upgrade(db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_revision() == head_revision()
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent(db_url: str):
    upgrade(db_url)
    upgrade(db_url)


def test_no_create_all_in_production_code():
    for pkg in ("hub", "interfaces", "mappings"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert "create_all(" not in path.read_text(), path
