"""Indexing a batch of new instances in a few statements (bulk uploads such as STOW-RS).

One query finds which SOP Instance UIDs are already stored; when none is, the missing parents are
created once each, the instance rows and change-log rows go in as one ``executemany`` each (psycopg 3
pipelines them), and each parent's counters move once by the batch's count. Anything else (a
duplicate, a UID twice in the batch) is left to the per-instance path.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select, update

from hub.domain.archive import InstanceRef, Level, StoreOutcome
from hub.store.db import dumps
from hub.store.models import CH, SE, ST, I, P


class IndexBulk:
    """Mixin of :class:`hub.store.index.IndexRepository`."""

    def _get_or_create(self, conn: Connection, table: Table, public_id: str,
                       values: dict[str, Any]) -> tuple[int, bool]:
        raise NotImplementedError

    def _modalities(self, conn: Connection, study_pk: int) -> str | None:
        raise NotImplementedError

    def _instance_values(self, new: Any, now: datetime, *, with_ids: bool) -> dict[str, Any]:  # noqa: ANN401
        raise NotImplementedError

    def _add_bulk(self, conn: Connection, news: list[Any], now: datetime) -> list[Any] | None:  # noqa: ANN401
        """Index ``news`` (``NewInstance``) when every one is new; ``None`` when the batch needs the
        per-instance path. Locks parents patient -> study -> series, the order of every writer."""
        from hub.store.index import IndexOutcome

        sops = [n.record.instance["sop_instance_uid"] for n in news]
        if len(set(sops)) != len(sops):
            return None
        if conn.execute(select(I.c.pk).where(I.c.sop_instance_uid.in_(sops)).limit(1)).first() is not None:
            return None
        pks: dict[str, int] = {}
        tables: dict[str, Table] = {}  # public id -> its table (parents of the batch)
        created: set[str] = set()
        for n in news:  # parents in first-seen order: a batch is usually one series
            rec = n.record
            pat_id, study_id, series_id, _ = n.ids
            for table, public_id, values in (
                (P, pat_id, {**rec.patient, "main_tags": dumps(rec.patient_tags), "num_studies": 0,
                             "num_series": 0, "num_instances": 0, "created_at": now, "updated_at": now}),
                (ST, study_id, {**rec.study, "main_tags": dumps(rec.study_tags), "num_series": 0,
                                "num_instances": 0, "modalities_in_study": None, "created_at": now,
                                "updated_at": now}),
                (SE, series_id, {**rec.series, "main_tags": dumps(rec.series_tags), "num_instances": 0,
                                 "created_at": now, "updated_at": now}),
            ):
                if public_id in pks:
                    continue
                if table is ST:
                    values["patient_pk"] = pks[pat_id]
                elif table is SE:
                    values["study_pk"] = pks[study_id]
                pk, new_row = self._get_or_create(conn, table, public_id, values)
                pks[public_id] = pk
                tables[public_id] = table
                if new_row:
                    created.add(public_id)
        rows = [{"series_pk": pks[n.ids[2]], **self._instance_values(n, now, with_ids=True)} for n in news]
        conn.execute(insert(I), rows)
        # Counters: each parent once, by the batch's count (and new children), in lock order.
        per = Counter[str]()
        new_series_of: Counter[str] = Counter()
        new_studies_of: Counter[str] = Counter()
        seen_series: set[str] = set()
        seen_studies: set[str] = set()
        for n in news:
            pat_id, study_id, series_id, _ = n.ids
            per[pat_id] += 1
            per[study_id] += 1
            per[series_id] += 1
            if series_id in created and series_id not in seen_series:
                seen_series.add(series_id)
                new_series_of[study_id] += 1
                new_series_of[pat_id] += 1
            if study_id in created and study_id not in seen_studies:
                seen_studies.add(study_id)
                new_studies_of[pat_id] += 1
        for table in (P, ST, SE):
            for public_id, pk in pks.items():
                if tables[public_id] is not table:
                    continue
                values: dict[str, Any] = {"num_instances": table.c.num_instances + per[public_id], "updated_at": now}
                if table is not SE:
                    values["num_series"] = table.c.num_series + new_series_of[public_id]
                if table is P:
                    values["num_studies"] = table.c.num_studies + new_studies_of[public_id]
                if table is ST and new_series_of[public_id]:
                    values["modalities_in_study"] = self._modalities(conn, pk)
                conn.execute(update(table).where(table.c.pk == pk).values(**values))
        changes = []
        for n in news:  # Orthanc logs the instance first, then each new parent upwards
            pat_id, study_id, series_id, inst_id = n.ids
            changes.append(("NewInstance", Level.INSTANCE, inst_id))
            for public_id, change, level in ((series_id, "NewSeries", Level.SERIES),
                                             (study_id, "NewStudy", Level.STUDY),
                                             (pat_id, "NewPatient", Level.PATIENT)):
                if public_id in created:
                    created.discard(public_id)
                    changes.append((change, level, public_id))
        conn.execute(insert(CH), [{"change_type": c, "resource_type": lvl.value, "public_id": pid, "created_at": now}
                                  for c, lvl, pid in changes])
        return [IndexOutcome(StoreOutcome.STORED,
                             InstanceRef(n.ids[3], n.record.instance["sop_instance_uid"], n.ids[2], n.ids[1], n.ids[0]))
                for n in news]
