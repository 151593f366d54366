"""Removing instances from the index (DELETE, overwrite): rows, counters, empty parents and the change
log in the caller's transaction; released blobs queued in ``blob_trash`` until the commit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from hub.domain.archive import Level
from hub.store.db import Database
from hub.store.models import CH, SE, ST, TRASH, I, P


class IndexRemoval:
    """Mixin of :class:`hub.store.index.IndexRepository`."""

    db: Database

    def _log(self, conn: Connection, now: datetime, change: str, level: Level, public_id: str) -> None:
        conn.execute(
            insert(CH).values(change_type=change, resource_type=level.value, public_id=public_id, created_at=now)
        )

    def _modalities(self, conn: Connection, study_pk: int) -> str | None:
        """ModalitiesInStudy of a study (IndexRepository's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ removal
    def remove_instance_row(self, conn: Connection, instance_pk: int, *, trash_blob: bool = True) -> list[str]:
        """Delete one instance row, fix counters and remove parents left empty (as Orthanc does).

        Returns the released blob keys (also queued in ``blob_trash`` when ``trash_blob``).
        """
        row = conn.execute(
            select(I.c.public_id, I.c.blob_key, I.c.series_pk, SE.c.study_pk, ST.c.patient_pk)
            .join(SE, SE.c.pk == I.c.series_pk)
            .join(ST, ST.c.pk == SE.c.study_pk)
            .where(I.c.pk == instance_pk)
        ).one()
        # Lock the parents patient -> study -> series, the order every writer uses.
        for table, pk in ((P, row.patient_pk), (ST, row.study_pk), (SE, row.series_pk)):
            conn.execute(select(table.c.pk).where(table.c.pk == pk).with_for_update(key_share=True))
        now = datetime.now(UTC).replace(tzinfo=None)
        conn.execute(delete(I).where(I.c.pk == instance_pk))
        series_left = conn.execute(
            update(SE).where(SE.c.pk == row.series_pk).values(num_instances=SE.c.num_instances - 1)
            .returning(SE.c.num_instances, SE.c.public_id)
        ).one()
        series_gone = series_left.num_instances <= 0
        if series_gone:
            conn.execute(delete(SE).where(SE.c.pk == row.series_pk))
            self._log(conn, now, "Deleted", Level.SERIES, series_left.public_id)
        study_values: dict[str, Any] = {
            "num_instances": ST.c.num_instances - 1,
            "num_series": ST.c.num_series - int(series_gone),
            "updated_at": now,
        }
        if series_gone:
            study_values["modalities_in_study"] = self._modalities(conn, row.study_pk)
        study_left = conn.execute(
            update(ST).where(ST.c.pk == row.study_pk).values(**study_values)
            .returning(ST.c.num_series, ST.c.public_id)
        ).one()
        study_gone = study_left.num_series <= 0
        if study_gone:
            conn.execute(delete(ST).where(ST.c.pk == row.study_pk))
            self._log(conn, now, "Deleted", Level.STUDY, study_left.public_id)
        patient_left = conn.execute(
            update(P).where(P.c.pk == row.patient_pk).values(
                num_instances=P.c.num_instances - 1,
                num_series=P.c.num_series - int(series_gone),
                num_studies=P.c.num_studies - int(study_gone),
                updated_at=now,
            ).returning(P.c.num_studies, P.c.public_id)
        ).one()
        if patient_left.num_studies <= 0:
            conn.execute(delete(P).where(P.c.pk == row.patient_pk))
            self._log(conn, now, "Deleted", Level.PATIENT, patient_left.public_id)
        self._log(conn, now, "Deleted", Level.INSTANCE, row.public_id)
        if trash_blob:
            conn.execute(insert(TRASH).values(blob_key=row.blob_key))
        return [row.blob_key]

    def clear_trash(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if not keys:
            return
        with self.db.write() as conn:
            for i in range(0, len(keys), 500):
                conn.execute(delete(TRASH).where(TRASH.c.blob_key.in_(keys[i : i + 500])))
