"""What the modality routes read and write: the run-time modality registry (table ``modalities``)
and, for C-STORE SCU of archived resources, the instances under an Orthanc patient/study/series/
instance id (Orthanc ``GetOrderedChildInstances``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, insert, inspect, select

from hub.store.db import Database
from hub.store.models import MODALITIES, SE, ST, I, P

# Columns a registry row carries besides ``pk`` and ``updated_at``.
FIELDS = tuple(c.name for c in MODALITIES.columns if c.name not in ("pk", "updated_at"))


class ModalityRepository:
    """Rows of ``modalities``: one per name, a declaration or a tombstone (``removed``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def exists(self) -> bool:
        """Whether the table is there (a database the hub never opened has none)."""
        with self.db.read() as conn:
            return inspect(conn).has_table(MODALITIES.name)

    def rows(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            result = conn.execute(select(*(MODALITIES.c[f] for f in FIELDS)).order_by(MODALITIES.c.name))
            return [dict(row._mapping) for row in result]

    def put(self, values: dict[str, Any]) -> None:
        """Insert or replace the row named ``values["name"]`` (every field of :data:`FIELDS`)."""
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise ValueError(f"missing fields {missing}")
        row = {f: values[f] for f in FIELDS}
        row["updated_at"] = datetime.now(UTC).replace(tzinfo=None)
        with self.db.write() as conn:
            conn.execute(delete(MODALITIES).where(MODALITIES.c.name == row["name"]))
            conn.execute(insert(MODALITIES).values(**row))

    def remove(self, name: str) -> bool:
        """Delete the row named ``name``; True when there was one."""
        with self.db.write() as conn:
            return conn.execute(delete(MODALITIES).where(MODALITIES.c.name == name)).rowcount > 0


# Orthanc levels, parent first, with the table and the column that links each to its parent.
_LEVELS: tuple[tuple[str, Table], ...] = (("Patient", P), ("Study", ST), ("Series", SE), ("Instance", I))


class ResourceInstances:
    """The archived instances under an Orthanc public id, in study/series/instance order."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def resolve(self, public_id: str) -> tuple[str, list[str]] | None:
        """``(level, instance public ids)`` for a patient, study, series or instance id; None when
        no resource has that id."""
        joined = I.join(SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk)
        order = (ST.c.pk, SE.c.series_number, SE.c.pk, I.c.instance_number, I.c.pk)
        with self.db.read() as conn:
            for level, table in _LEVELS:
                pk = conn.execute(select(table.c.pk).where(table.c.public_id == public_id)).scalar()
                if pk is None:
                    continue
                link = {"Patient": ST.c.patient_pk, "Study": SE.c.study_pk, "Series": I.c.series_pk,
                        "Instance": I.c.pk}[level]
                ids = conn.execute(select(I.c.public_id).select_from(joined).where(link == pk).order_by(*order))
                return level, list(ids.scalars())
        return None
