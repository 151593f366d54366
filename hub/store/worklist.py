"""Modality Worklist query -> SQL over ``scheduled_steps JOIN orders`` (PS3.4 K.6.1.2, matching per
PS3.4 C.2.2.2): every matching key has an indexed column; rows are streamed in keyset pages.

Keys inside the Scheduled Procedure Step Sequence (station AE, modality, start date/time, SPS ID,
status) match the step's columns; Patient's Name matches the upper-cased, accent-free
``orders.patient_name_norm`` (so matching is case-insensitive and uses its ``LIKE`` prefix index).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, select, tuple_

from hub.domain.query import Condition, Match
from hub.store.db import Database
from hub.store.order_models import ORDERS, STEPS
from hub.store.query import like_pattern

# MWL matching key (keyword) -> column
COLUMNS: dict[str, Any] = {
    "ScheduledStationAETitle": STEPS.c.station_aet,
    "Modality": STEPS.c.modality,
    "ScheduledProcedureStepStartDate": STEPS.c.start_date,
    "ScheduledProcedureStepStartTime": STEPS.c.start_time,
    "ScheduledProcedureStepID": STEPS.c.sps_id,
    "ScheduledProcedureStepStatus": STEPS.c.status,
    "StudyInstanceUID": STEPS.c.study_uid,
    "PatientName": ORDERS.c.patient_name_norm,
    "PatientID": ORDERS.c.patient_id,
    "IssuerOfPatientID": ORDERS.c.issuer_of_patient_id,
    "AccessionNumber": ORDERS.c.accession_number,
    "RequestedProcedureID": ORDERS.c.requested_procedure_id,
}

_SELECT = (
    STEPS.c.pk, STEPS.c.sps_id, STEPS.c.status, STEPS.c.modality, STEPS.c.station_aet, STEPS.c.start_date,
    STEPS.c.start_time, STEPS.c.study_uid, STEPS.c.attrs.label("step_attrs"), ORDERS.c.pk.label("order_pk"),
    ORDERS.c.accession_number, ORDERS.c.requested_procedure_id, ORDERS.c.patient_id, ORDERS.c.issuer_of_patient_id,
    ORDERS.c.specific_character_set, ORDERS.c.patient_attrs, ORDERS.c.attrs.label("order_attrs"),
)


def _time6(col: Any) -> Any:
    """A stored TM as its first six digits (``0930`` -> ``093000``), comparable as text."""
    return func.substr(col + literal("000000"), 1, 6)


def _condition(cond: Condition) -> ColumnElement[bool]:
    col = COLUMNS[cond.keyword]
    value = cond.value
    if cond.keyword == "ScheduledProcedureStepStartTime" and cond.match is Match.RANGE:
        lo, hi = value  # type: ignore[misc]
        t = _time6(col)
        parts = []
        if lo is not None:
            parts.append(t >= str(lo)[:6])
        if hi is not None:
            parts.append(t <= str(hi)[:6])
        return and_(*parts)
    if cond.match is Match.SINGLE:
        return col == value
    if cond.match is Match.LIST:
        return col.in_(list(value))  # type: ignore[arg-type]
    if cond.match is Match.WILDCARD:
        pattern, escape = like_pattern(str(value))
        return col.like(pattern, escape="\\") if escape else col.like(pattern)
    if cond.match is Match.RANGE:
        lo, hi = value  # type: ignore[misc]
        parts = []
        if lo is not None:
            parts.append(col >= lo)
        if hi is not None:
            parts.append(col <= hi)
        return and_(*parts)
    raise ValueError(f"{cond.keyword}: {cond.match} matching is not supported by the worklist")


def _record(row: Any) -> dict[str, Any]:
    return {
        "step_pk": row.pk, "order_pk": row.order_pk, "sps_id": row.sps_id, "status": row.status,
        "modality": row.modality, "station_aet": row.station_aet, "start_date": row.start_date,
        "start_time": row.start_time, "study_uid": row.study_uid, "accession_number": row.accession_number,
        "requested_procedure_id": row.requested_procedure_id, "patient_id": row.patient_id,
        "issuer_of_patient_id": row.issuer_of_patient_id, "charset": row.specific_character_set or "",
        "patient": json.loads(row.patient_attrs or "{}"), "order": json.loads(row.order_attrs or "{}"),
        "step": json.loads(row.step_attrs or "{}"),
    }


class WorklistRepository:
    """Reads the worklist: one record per scheduled step, with its order's patient and request attributes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def statement(self, conditions: list[Condition], statuses: list[str]) -> Select[Any]:
        stmt = select(*_SELECT).select_from(STEPS.join(ORDERS, ORDERS.c.pk == STEPS.c.order_pk))
        named_status = any(c.keyword == "ScheduledProcedureStepStatus" for c in conditions)
        if not named_status and statuses:
            stmt = stmt.where(STEPS.c.status.in_(statuses))
        for cond in conditions:
            stmt = stmt.where(_condition(cond))
        return stmt.order_by(STEPS.c.start_date, STEPS.c.start_time, STEPS.c.pk)

    def search(self, conditions: list[Condition], statuses: list[str], *, limit: int | None = None,
               page: int = 500, first_page: int = 100) -> Iterator[dict[str, Any]]:
        """Matching steps in (start date, start time, pk) order, streamed in keyset pages so memory
        stays bounded; ``statuses`` applies unless a condition names ScheduledProcedureStepStatus."""
        base = self.statement(conditions, statuses)
        key = tuple_(STEPS.c.start_date, STEPS.c.start_time, STEPS.c.pk)
        last: tuple[str, str, int] | None = None
        remaining = limit
        size = first_page
        with self.db.read() as conn:
            while remaining is None or remaining > 0:
                want = size if remaining is None else min(size, remaining)
                stmt = base if last is None else base.where(key > tuple_(literal(last[0]), literal(last[1]),
                                                                         literal(last[2])))
                rows = conn.execute(stmt.limit(want)).all()
                for row in rows:
                    yield _record(row)
                if remaining is not None:
                    remaining -= len(rows)
                if len(rows) < want:
                    return
                last = (rows[-1].start_date, rows[-1].start_time, rows[-1].pk)
                size = page

    def count(self, conditions: list[Condition], statuses: list[str]) -> int:
        stmt = self.statement(conditions, statuses).order_by(None).subquery()
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(stmt)).scalar_one())
