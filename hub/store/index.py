"""Index repository: writes one instance (and its parents, counters, change log) in one transaction.

Hot path in SQLAlchemy Core. Parents are found by their Orthanc public id and created with
``INSERT ... ON CONFLICT DO NOTHING`` so that concurrent associations storing into the same
patient/study/series never fail; counters are updated in patient -> study -> series order.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, String, Table, bindparam, exists, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.domain.archive import IndexRecord, InstanceRef, Level, StoreOutcome
from hub.domain.origin import Origin
from hub.errors import DuplicateInstance, HubError
from hub.store.db import Database, dumps
from hub.store.index_bulk import IndexBulk
from hub.store.index_reads import IndexReads
from hub.store.index_removal import IndexRemoval
from hub.store.models import CH, SE, ST, TRASH, I, P

log = logging.getLogger(__name__)



def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


ATTEMPTS = 5


def _is_retryable(exc: OperationalError) -> bool:
    """Deadlock (40P01) or serialization failure (40001) on PostgreSQL."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in ("40P01", "40001")


def _limits(table: Table) -> dict[str, int]:
    return {c.name: c.type.length for c in table.columns
            if isinstance(c.type, String) and c.type.length and not c.name.endswith("uid")}


_LIMITS: dict[str, dict[str, int]] = {}


def fit(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with strings cut to their column's length: the index columns serve matching and
    sorting; the full values stay in the main tags and the DICOM JSON (and in the file). PostgreSQL
    refuses an over-long value where SQLite would keep it, so both keep the same cut value."""
    limits = _LIMITS.get(table.name)
    if limits is None:
        limits = _LIMITS[table.name] = _limits(table)
    return {k: (v[: limits[k]] if isinstance(v, str) and k in limits and len(v) > limits[k] else v)
            for k, v in values.items()}


@dataclass(frozen=True)
class NewInstance:
    record: IndexRecord
    ids: tuple[str, str, str, str]  # patient, study, series, instance public ids
    blob_key: str
    file_size: int
    pixel_data_offset: int | None
    origin: Origin


@dataclass(frozen=True)
class IndexOutcome:
    outcome: StoreOutcome
    ref: InstanceRef
    released_blobs: tuple[str, ...] = ()  # blobs to delete now that the transaction committed


class IndexRepository(IndexReads, IndexRemoval, IndexBulk):
    def __init__(self, db: Database) -> None:
        self.db = db
        dialect = sqlite if db.is_sqlite else postgresql
        self._insert = dialect.insert
        self._prepare_hot_path()

    def _prepare_hot_path(self) -> None:
        """Statements of the per-instance path, built once (SQLAlchemy then reuses their compiled
        form): the common case of an instance joining an existing series."""
        self._q_existing = (
            select(I.c.pk, I.c.public_id, I.c.blob_key, I.c.series_pk)
            .where(I.c.sop_instance_uid == bindparam("b_sop"))
            # FOR UPDATE: a concurrent overwrite of the same instance must see the blob key the
            # other one committed, or that blob would never be released (PostgreSQL READ COMMITTED).
            .with_for_update()
        )
        self._q_parents = select(
            select(P.c.pk).where(P.c.public_id == bindparam("b_p")).scalar_subquery().label("p"),
            select(ST.c.pk).where(ST.c.public_id == bindparam("b_st")).scalar_subquery().label("st"),
            select(SE.c.pk).where(SE.c.public_id == bindparam("b_se")).scalar_subquery().label("se"),
        )
        self._ins_instance = insert(I)
        self._ins_change = insert(CH)
        bumps = (
            update(P).where(P.c.pk == bindparam("b_p_pk"))
            .values(num_instances=P.c.num_instances + 1, updated_at=bindparam("b_now")),
            update(ST).where(ST.c.pk == bindparam("b_st_pk"))
            .values(num_instances=ST.c.num_instances + 1, updated_at=bindparam("b_now")),
            update(SE).where(SE.c.pk == bindparam("b_se_pk"))
            .values(num_instances=SE.c.num_instances + 1, updated_at=bindparam("b_now")),
        )
        self._bumps = bumps
        # PostgreSQL: the three counters and the change row in one round trip. Data-modifying CTEs
        # run in no defined order, so each one reads the previous one's output: that chains them
        # patient -> study -> series, the lock order of every other writer (no deadlocks).
        p_cte = bumps[0].returning(P.c.pk).cte("bump_p")
        st_cte = bumps[1].where(exists(select(p_cte.c.pk))).returning(ST.c.pk).cte("bump_st")
        se_cte = bumps[2].where(exists(select(st_cte.c.pk))).returning(SE.c.pk).cte("bump_se")
        self._bump_all = insert(CH).from_select(
            ["change_type", "resource_type", "public_id", "created_at"],
            select(
                literal("NewInstance"), literal(Level.INSTANCE.value), bindparam("b_id"), bindparam("b_now")
            ).where(exists(select(se_cte.c.pk))),
        )

    # ------------------------------------------------------------------ ingest
    def add_instance(
        self, new: NewInstance, policy: str, before_commit: Callable[[], None] | None = None
    ) -> IndexOutcome:
        """Index one instance; ``policy`` decides what a known SOP Instance UID does.

        ``before_commit`` runs inside the transaction just before COMMIT (the ingest path waits
        there for the blob's fsync, which so overlaps with the SQL work).
        """
        for attempt in range(ATTEMPTS):
            try:
                with self.db.write() as conn:
                    outcome = self._add(conn, new, policy)
                    if before_commit is not None and outcome.outcome is not StoreOutcome.DUPLICATE:
                        before_commit()
                    return outcome
            except (IntegrityError, OperationalError) as exc:
                # A concurrent transaction stored the same SOP Instance UID first (retry, and the
                # duplicate policy applies to it), or PostgreSQL chose us as a deadlock victim.
                if attempt == ATTEMPTS - 1 or (isinstance(exc, OperationalError) and not _is_retryable(exc)):
                    raise
                log.info("concurrent write of the same instance, retrying")
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    def add_instances(
        self, news: list[NewInstance], policy: str, before_commit: Callable[[], None] | None = None
    ) -> list[IndexOutcome | HubError]:
        """Index several instances in one transaction (group commit: one COMMIT, one WAL/fsync for
        the lot). Each instance runs in its own SAVEPOINT, so one refused instance (duplicate policy
        reject) or a lost race on the same SOP Instance UID costs only itself; its slot in the
        answer is the :class:`HubError`. ``before_commit`` runs just before COMMIT.

        The common case (nothing refused, no race) first runs without savepoints (two statements
        fewer per instance); any refusal or conflict rolls that back and the batch runs again with them."""
        if len(news) > 1:
            try:
                with self.db.write() as conn:
                    plain: list[IndexOutcome | HubError] | None = self._add_bulk(conn, news, utcnow())
                    if plain is None:
                        plain = [self._add(conn, new, policy) for new in news]
                    if before_commit is not None:
                        before_commit()
                    return plain
            except (HubError, IntegrityError, OperationalError):
                pass  # rolled back: redo it instance by instance below
        for attempt in range(ATTEMPTS):
            try:
                with self.db.write() as conn:
                    out: list[IndexOutcome | HubError] = []
                    for new in news:
                        out.append(self._add_savepoint(conn, new, policy))
                    if before_commit is not None:
                        before_commit()
                    return out
            except OperationalError as exc:  # PostgreSQL deadlock victim or serialization: redo the lot
                if attempt == ATTEMPTS - 1 or not _is_retryable(exc):
                    raise
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise AssertionError("unreachable")

    def _add_savepoint(self, conn: Connection, new: NewInstance, policy: str) -> IndexOutcome | HubError:
        for attempt in range(ATTEMPTS):
            sp = conn.begin_nested()
            try:
                outcome = self._add(conn, new, policy)
                sp.commit()
                return outcome
            except HubError as exc:
                sp.rollback()
                return exc
            except IntegrityError:  # another writer stored the same SOP Instance UID: policy applies
                sp.rollback()
                if attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _add(self, conn: Connection, new: NewInstance, policy: str) -> IndexOutcome:
        rec = new.record
        pat_id, study_id, series_id, inst_id = new.ids
        sop_uid = rec.instance["sop_instance_uid"]
        ref = InstanceRef(inst_id, sop_uid, series_id, study_id, pat_id)
        now = utcnow()
        released: list[str] = []
        outcome = StoreOutcome.STORED

        existing = conn.execute(self._q_existing, {"b_sop": sop_uid}).first()
        if existing is not None:
            if policy == "keep":
                old = self._ref_of(conn, existing.pk)
                return IndexOutcome(StoreOutcome.DUPLICATE, old)
            if policy == "reject":
                raise DuplicateInstance(sop_uid)
            outcome = StoreOutcome.OVERWRITTEN
            released.append(existing.blob_key)
            conn.execute(insert(TRASH).values(blob_key=existing.blob_key))
            if existing.public_id == inst_id:
                conn.execute(
                    update(I)
                    .where(I.c.pk == existing.pk)
                    .values(**self._instance_values(new, now, with_ids=False))
                )
                self._touch_parents(conn, existing.series_pk, now)
                self._log(conn, now, "NewInstance", Level.INSTANCE, inst_id)
                return IndexOutcome(outcome, ref, tuple(released))
            self.remove_instance_row(conn, existing.pk, trash_blob=False)

        # One round trip for the three parents; the usual case is that they all exist.
        known = conn.execute(self._q_parents, {"b_p": pat_id, "b_st": study_id, "b_se": series_id}).one()
        patient_pk, new_patient = known.p, False
        if patient_pk is None:
            patient_pk, new_patient = self._get_or_create(
                conn, P, pat_id,
                {**rec.patient, "main_tags": dumps(rec.patient_tags), "num_studies": 0, "num_series": 0,
                 "num_instances": 0, "created_at": now, "updated_at": now},
            )
        study_pk, new_study = known.st, False
        if study_pk is None:
            study_pk, new_study = self._get_or_create(
                conn, ST, study_id,
                {**rec.study, "patient_pk": patient_pk, "main_tags": dumps(rec.study_tags), "num_series": 0,
                 "num_instances": 0, "modalities_in_study": None, "created_at": now, "updated_at": now},
            )
        series_pk, new_series = known.se, False
        if series_pk is None:
            series_pk, new_series = self._get_or_create(
                conn, SE, series_id,
                {**rec.series, "study_pk": study_pk, "main_tags": dumps(rec.series_tags), "num_instances": 0,
                 "created_at": now, "updated_at": now},
            )
        conn.execute(self._ins_instance, {"series_pk": series_pk, **self._instance_values(new, now, with_ids=True)})

        if not (new_patient or new_study or new_series):
            params = {"b_p_pk": patient_pk, "b_st_pk": study_pk, "b_se_pk": series_pk, "b_now": now, "b_id": inst_id}
            if self.db.is_sqlite:
                for stmt in self._bumps:
                    conn.execute(stmt, params)
                conn.execute(self._ins_change, {"change_type": "NewInstance", "resource_type": Level.INSTANCE.value,
                                                "public_id": inst_id, "created_at": now})
            else:
                conn.execute(self._bump_all, params)
            return IndexOutcome(outcome, ref, tuple(released))

        # A new series, study or patient: counters of the parents grow by more than one instance.
        study_values: dict[str, Any] = {
            "num_instances": ST.c.num_instances + 1,
            "num_series": ST.c.num_series + int(new_series),
            "updated_at": now,
        }
        if new_series:
            study_values["modalities_in_study"] = self._modalities(conn, study_pk)
        conn.execute(
            update(P).where(P.c.pk == patient_pk).values(
                num_instances=P.c.num_instances + 1,
                num_series=P.c.num_series + int(new_series),
                num_studies=P.c.num_studies + int(new_study),
                updated_at=now,
            )
        )
        conn.execute(update(ST).where(ST.c.pk == study_pk).values(**study_values))
        conn.execute(
            update(SE).where(SE.c.pk == series_pk).values(num_instances=SE.c.num_instances + 1, updated_at=now)
        )
        # Orthanc logs the instance first, then each new parent upwards.
        changes = [("NewInstance", Level.INSTANCE, inst_id)]
        if new_series:
            changes.append(("NewSeries", Level.SERIES, series_id))
        if new_study:
            changes.append(("NewStudy", Level.STUDY, study_id))
        if new_patient:
            changes.append(("NewPatient", Level.PATIENT, pat_id))
        conn.execute(
            self._ins_change,
            [{"change_type": c, "resource_type": lvl.value, "public_id": pid, "created_at": now}
             for c, lvl, pid in changes],
        )
        return IndexOutcome(outcome, ref, tuple(released))

    def _instance_values(self, new: NewInstance, now: datetime, *, with_ids: bool) -> dict[str, Any]:
        rec, o = new.record, new.origin
        values: dict[str, Any] = {
            "sop_class_uid": rec.instance["sop_class_uid"],
            "instance_number": rec.instance["instance_number"],
            "number_of_frames": rec.instance["number_of_frames"],
            "transfer_syntax_uid": rec.instance["transfer_syntax_uid"],
            "blob_key": new.blob_key,
            "file_size": new.file_size,
            "pixel_data_offset": new.pixel_data_offset,
            "main_tags": dumps(rec.instance_tags),
            "metadata_json": dumps(rec.metadata),
            "origin_protocol": o.protocol,
            "origin_remote_aet": o.remote_aet or None,
            "origin_remote_ip": o.remote_ip or None,
            "origin_called_aet": o.called_aet or None,
            "origin_user": o.user or None,
            "received_at": now,
        }
        if with_ids:
            values["public_id"] = new.ids[3]
            values["sop_instance_uid"] = rec.instance["sop_instance_uid"]
        return fit(I, values)

    def _get_or_create(
        self, conn: Connection, table: Table, public_id: str, values: dict[str, Any]
    ) -> tuple[int, bool]:
        row = conn.execute(select(table.c.pk).where(table.c.public_id == public_id)).first()
        if row is not None:
            return row.pk, False
        stmt = (
            self._insert(table)
            .values(public_id=public_id, **fit(table, values))
            .on_conflict_do_nothing(index_elements=["public_id"])
            .returning(table.c.pk)
        )
        row = conn.execute(stmt).first()
        if row is not None:
            return row.pk, True
        row = conn.execute(select(table.c.pk).where(table.c.public_id == public_id)).one()
        return row.pk, False

    def _modalities(self, conn: Connection, study_pk: int) -> str | None:
        mods = conn.execute(
            select(SE.c.modality).where(SE.c.study_pk == study_pk, SE.c.modality.is_not(None)).distinct()
        ).scalars()
        joined = "\\".join(sorted(set(mods)))
        return joined or None

    def _touch_parents(self, conn: Connection, series_pk: int, now: datetime) -> None:
        s = conn.execute(select(SE.c.study_pk).where(SE.c.pk == series_pk)).one()
        st = conn.execute(select(ST.c.patient_pk).where(ST.c.pk == s.study_pk)).one()
        conn.execute(update(P).where(P.c.pk == st.patient_pk).values(updated_at=now))
        conn.execute(update(ST).where(ST.c.pk == s.study_pk).values(updated_at=now))
        conn.execute(update(SE).where(SE.c.pk == series_pk).values(updated_at=now))

    def _ref_of(self, conn: Connection, instance_pk: int) -> InstanceRef:
        row = conn.execute(
            select(I.c.public_id, I.c.sop_instance_uid, SE.c.public_id.label("se"), ST.c.public_id.label("st"),
                   P.c.public_id.label("pa"))
            .join(SE, SE.c.pk == I.c.series_pk)
            .join(ST, ST.c.pk == SE.c.study_pk)
            .join(P, P.c.pk == ST.c.patient_pk)
            .where(I.c.pk == instance_pk)
        ).one()
        return InstanceRef(row.public_id, row.sop_instance_uid, row.se, row.st, row.pa)
