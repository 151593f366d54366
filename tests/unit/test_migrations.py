"""The Alembic migrations produce exactly the models' schema (no create_all anywhere)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from hub.app import Hub
from hub.store import order_models  # noqa: F401  (registers the order tables on Base.metadata)
from hub.store.db import alembic_config, head_revision, upgrade
from hub.store.models import ST, Base
from hub.store.order_models import STEPS
from mappings.dicom_to_fhir_values import dicom_utc
from tests.contract.test_fhir_read import hl7, store

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


def test_0006_fills_the_start_instants_of_rows_stored_before_it(hub: Hub, db_url: str, tmp_path: Path):
    """Migration 0006 adds ``started_at`` (the FHIR ``started`` instant) to studies and scheduled steps and
    fills it for existing rows as the write paths do: (0008,0201) of the first instance or of the order,
    else the hub's zone; a date without time is midnight in the hub's zone (PS3.3 C.12.1.1.8)."""
    store(hub, tmp_path, "CT_small.dcm", StudyInstanceUID="2.25.60601", TimezoneOffsetFromUTC="+0500",
          StudyDate="20200101", StudyTime="120000")
    store(hub, tmp_path, "MR_small.dcm", StudyInstanceUID="2.25.60602", StudyDate="20200102", StudyTime="")
    hl7(hub, "04_omi_o23_nw_mr_two_sps_v251.hl7")  # TQ1-7 20250315133000+0100, two steps

    def started() -> dict[str, list[tuple[str, datetime | None]]]:
        engine = create_engine(db_url)
        try:
            with engine.connect() as conn:
                return {"studies": [tuple(r) for r in conn.execute(
                            select(ST.c.study_uid, ST.c.started_at).order_by(ST.c.study_uid))],
                        "steps": [tuple(r) for r in conn.execute(
                            select(STEPS.c.sps_id, STEPS.c.started_at).order_by(STEPS.c.sps_id))]}
        finally:
            engine.dispose()

    before = started()
    assert before["studies"] == [("2.25.60601", datetime(2020, 1, 1, 7)),
                                 ("2.25.60602", dicom_utc("20200102", None, None))]
    assert len(before["steps"]) == 2 and {at for _, at in before["steps"]} == {datetime(2025, 3, 15, 12, 30)}

    command.downgrade(alembic_config(db_url), "0005")
    engine = create_engine(db_url)
    try:
        assert "started_at" not in {c["name"] for c in inspect(engine).get_columns("studies")}
    finally:
        engine.dispose()
    upgrade(db_url)
    assert started() == before
