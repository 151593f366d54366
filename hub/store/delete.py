"""``DELETE /{level}/{id}``: one unit of work removing a patient, study, series or instance.

In ONE transaction: the rows of the resource and everything under it are deleted, the counters
(and ModalitiesInStudy) of the remaining ancestors are decreased, ancestors left empty are deleted
too (as Orthanc does), the change-log entries of every removed resource go (Orthanc's ``Changes``
rows cascade with their resource; no ``Deleted`` entry is logged) and the blob keys are queued in
``blob_trash``. The caller deletes the blob files after the commit and then clears the trash; a
crash in between is finished by ``IngestService.recover``.

Rows are locked patient -> study -> series -> instance, the order of every other writer; a
PostgreSQL deadlock or serialization failure is retried.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import OperationalError

from hub.domain.archive import Level
from hub.store.db import Database
from hub.store.models import CH, SE, ST, TRASH, I, P
from hub.store.resources import BATCH, ORDER, PARENT_FK, TABLES, parent_level

ATTEMPTS = 5


def _is_retryable(exc: OperationalError) -> bool:
    """Deadlock (40P01) or serialization failure (40001) on PostgreSQL."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001")


@dataclass
class Deletion:
    """What one delete removed: the nearest ancestor left (level, public id) and the blob keys."""

    remaining: tuple[Level, str] | None
    blob_keys: list[str] = field(default_factory=list)
    removed: dict[Level, list[str]] = field(default_factory=dict)


class DeleteRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def delete(self, level: Level, public_id: str) -> Deletion | None:
        """Remove one resource and its subtree; ``None`` (nothing changed) when it is unknown."""
        for attempt in range(ATTEMPTS):
            try:
                with self.db.write() as conn:
                    return self._delete(conn, level, public_id)
            except OperationalError as exc:
                if attempt == ATTEMPTS - 1 or not _is_retryable(exc):
                    raise
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise AssertionError("unreachable")

    @staticmethod
    def _chain_stmt(level: Level, public_id: str) -> Any:
        if level is Level.PATIENT:
            return select(P.c.pk).where(P.c.public_id == public_id)
        if level is Level.STUDY:
            return select(ST.c.patient_pk, ST.c.pk).where(ST.c.public_id == public_id)
        if level is Level.SERIES:
            return (select(ST.c.patient_pk, SE.c.study_pk, SE.c.pk)
                    .join_from(SE, ST, ST.c.pk == SE.c.study_pk).where(SE.c.public_id == public_id))
        return (select(ST.c.patient_pk, SE.c.study_pk, I.c.series_pk, I.c.pk)
                .join_from(I, SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk)
                .where(I.c.public_id == public_id))

    def _delete(self, conn: Connection, level: Level, public_id: str) -> Deletion | None:
        row = conn.execute(self._chain_stmt(level, public_id)).first()
        if row is None:
            return None
        chain = list(row)  # pks patient .. resource
        depth = ORDER.index(level)
        # Lock the ancestors and the resource top-down, then the subtree's studies and series.
        for lvl, pk in zip(ORDER, chain, strict=False):
            conn.execute(select(TABLES[lvl].c.pk).where(TABLES[lvl].c.pk == pk).with_for_update())
        blob_keys: list[str] = []
        subtree: dict[Level, list[int]] = {level: [chain[-1]]}
        ids: dict[Level, list[str]] = {level: [public_id]}
        for lvl in ORDER[depth + 1 :]:
            table, fk = TABLES[lvl], PARENT_FK[lvl]
            pks: list[int] = []
            names: list[str] = []
            keys: list[str] = []
            for start in range(0, len(subtree[parent_level(lvl)]), BATCH):
                chunk = subtree[parent_level(lvl)][start : start + BATCH]
                cols: list[Any] = [table.c.pk, table.c.public_id]
                if lvl is Level.INSTANCE:
                    cols.append(I.c.blob_key)
                stmt = select(*cols).where(fk.in_(chunk)).order_by(table.c.pk)
                if lvl is not Level.INSTANCE:
                    stmt = stmt.with_for_update()
                for r in conn.execute(stmt):
                    pks.append(r.pk)
                    names.append(r.public_id)
                    if lvl is Level.INSTANCE:
                        keys.append(r.blob_key)
            subtree[lvl], ids[lvl] = pks, names
            if lvl is Level.INSTANCE:
                blob_keys = keys
        if level is Level.INSTANCE:
            blob_keys = [conn.execute(select(I.c.blob_key).where(I.c.pk == chain[-1])).scalar_one()]

        # Rows of the subtree, bottom-up.
        for lvl in reversed(ORDER[depth:]):
            pks = subtree[lvl]
            for start in range(0, len(pks), BATCH):
                conn.execute(delete(TABLES[lvl]).where(TABLES[lvl].c.pk.in_(pks[start : start + BATCH])))
        removed = {lvl: len(subtree.get(lvl, [])) for lvl in ORDER}

        # Ancestors, nearest first: emptied ones go too, the others get their counters decreased.
        remaining: tuple[Level, str] | None = None
        for lvl, pk in reversed(list(zip(ORDER[:depth], chain[:depth], strict=True))):
            gone = self._update_ancestor(conn, lvl, pk, removed)
            if gone is not None:
                removed[lvl] += 1
                ids.setdefault(lvl, []).append(gone)
            elif remaining is None:
                remaining = (lvl, conn.execute(select(TABLES[lvl].c.public_id).where(TABLES[lvl].c.pk == pk))
                             .scalar_one())

        for start in range(0, len(blob_keys), BATCH):
            conn.execute(insert(TRASH), [{"blob_key": k} for k in blob_keys[start : start + BATCH]])
        every_id = [pid for names in ids.values() for pid in names]
        for start in range(0, len(every_id), BATCH):
            conn.execute(delete(CH).where(CH.c.public_id.in_(every_id[start : start + BATCH])))
        return Deletion(remaining, blob_keys, ids)

    def _update_ancestor(self, conn: Connection, level: Level, pk: int, removed: dict[Level, int]) -> str | None:
        """Decrease one ancestor's counters; delete it when it has no child left (returns its id)."""
        table = TABLES[level]
        row = conn.execute(select(table).where(table.c.pk == pk)).mappings().one()
        child = ORDER[ORDER.index(level) + 1]
        children_left = {Level.PATIENT: "num_studies", Level.STUDY: "num_series", Level.SERIES: "num_instances"}
        if row[children_left[level]] - removed[child] <= 0:
            conn.execute(delete(table).where(table.c.pk == pk))
            return str(row["public_id"])
        values: dict[str, Any] = {"num_instances": table.c.num_instances - removed[Level.INSTANCE]}
        if level is not Level.SERIES:
            values["num_series"] = table.c.num_series - removed[Level.SERIES]
        if level is Level.PATIENT:
            values["num_studies"] = P.c.num_studies - removed[Level.STUDY]
        if level is Level.STUDY and removed[Level.SERIES]:
            mods = conn.execute(
                select(SE.c.modality).where(SE.c.study_pk == pk, SE.c.modality.is_not(None)).distinct()
            ).scalars()
            values["modalities_in_study"] = "\\".join(sorted(set(mods))) or None
        conn.execute(update(table).where(table.c.pk == pk).values(**values))
        return None
