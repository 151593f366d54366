"""SQL for the FHIR ServiceRequest view of orders (FHIR R4 RESTful API: read, search, conditional create).

ServiceRequest.status is derived from the steps (mapping-reference §2.4, see
``mappings.order_to_fhir.service_request_status``); :func:`status_condition` is the same rule in SQL so a
``status`` search pages in the database. ``authored`` matches ``orders.authored_at``, ServiceRequest.authoredOn
as UTC (FHIR R4 SearchParameter ServiceRequest-authored, path ServiceRequest.authoredOn).

Every order row comes with ``archive_patient``: the public id of the archive's patient of that Patient ID
(None when the archive has none), looked up in the same statement, so that the subject reference of the
ServiceRequest costs no query of its own; a create returns it from its INSERT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Label, Select, and_, bindparam, exists, false, func, not_, or_, select
from sqlalchemy.exc import IntegrityError

from hub.domain.orders import FINAL_STEP_STATES, StepStatus
from hub.errors import HubError
from hub.store.db import Database
from hub.store.models import P
from hub.store.order_models import ORDERS, STEPS
from hub.store.orders import OrderRepository, OrderUnit

T = TypeVar("T")
_FINAL = [s.value for s in FINAL_STEP_STATES]
IDENTIFIER_COLUMNS = (ORDERS.c.accession_number, ORDERS.c.placer_order, ORDERS.c.filler_order,
                      ORDERS.c.requested_procedure_id, ORDERS.c.study_uid)
MAX_CANDIDATES = 1000


def archive_patient(patient_id: ColumnElement[str]) -> Label[str]:
    """The archive's patient of this Patient ID (the first public id, as ``FhirService.patient_id_for``)."""
    return select(P.c.public_id).where(P.c.patient_id == patient_id).order_by(P.c.public_id).limit(1) \
        .scalar_subquery().label("archive_patient")


# Built once: a statement built per request costs more Python time than the query (SQLAlchemy compiles
# it from cache, but constructing the expression and its cache key is per call).
_ORDERS: Select[Any] = select(ORDERS, archive_patient(ORDERS.c.patient_id))
# Orders that carry an identifier value in any identifier column: conditional create's lookup.
_BY_IDENTIFIER: Select[Any] = _ORDERS.where(or_(*(c == bindparam("value") for c in IDENTIFIER_COLUMNS))) \
    .order_by(ORDERS.c.pk).limit(MAX_CANDIDATES)


# What the INSERT of a new order also returns (its ``patient_id`` value as a bind parameter).
_RETURNING = (archive_patient(bindparam("patient_id", type_=ORDERS.c.patient_id.type)),)


def status_condition(status: str) -> ColumnElement[bool]:
    """SQL form of ``service_request_status``: ER -> entered-in-error, HD -> on-hold, an open step ->
    active, else completed (a completed step, or no step and CM) / revoked."""
    special = ORDERS.c.status.in_(["ER", "HD"])
    steps = STEPS.c.order_pk == ORDERS.c.pk
    open_step = exists(select(STEPS.c.pk).where(steps, STEPS.c.status.not_in(_FINAL)))
    any_step = exists(select(STEPS.c.pk).where(steps))
    done = exists(select(STEPS.c.pk).where(steps, STEPS.c.status == StepStatus.COMPLETED.value))
    if status == "entered-in-error":
        return ORDERS.c.status == "ER"
    if status == "on-hold":
        return ORDERS.c.status == "HD"
    if status == "active":
        return and_(not_(special), or_(open_step, and_(not_(any_step), ORDERS.c.status.not_in(["CA", "DC", "CM"]))))
    closed = and_(not_(special), not_(open_step))
    if status == "completed":
        return and_(closed, or_(done, and_(not_(any_step), ORDERS.c.status == "CM")))
    if status == "revoked":
        return and_(closed, or_(and_(any_step, not_(done)), and_(not_(any_step), ORDERS.c.status.in_(["CA", "DC"]))))
    return ORDERS.c.pk < 0  # a status no order has (draft, unknown)


class FhirOrderStore:
    """Reads of orders with their steps, and the write unit of the FHIR order service."""

    def __init__(self, db: Database, orders: OrderRepository) -> None:
        self.db = db
        self.orders = orders

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.db.read() as conn:
            yield conn

    def write(self, work: Callable[[OrderUnit], T]) -> T:
        """Run ``work`` in one order transaction; a unique-key race (two creates of one study) -> "conflict"."""
        try:
            with self.orders.unit() as unit:
                unit.returning = _RETURNING
                return work(unit)
        except IntegrityError:
            raise HubError("conflict", "an order for this study was created concurrently") from None

    @staticmethod
    def exists(conn: Connection, study_uid: str) -> bool:
        """Whether an order of this Study UID exists (row lock taken where the database has them)."""
        return conn.execute(select(ORDERS.c.pk).where(ORDERS.c.study_uid == study_uid).with_for_update()).first() \
            is not None

    @staticmethod
    def load(conn: Connection, *, pk: int | None = None, study_uid: str | None = None,
             lock: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The order (by pk or Study UID) and its steps by SPS ID; ``lock`` takes the row lock."""
        stmt = _ORDERS.where(ORDERS.c.pk == pk if pk is not None else ORDERS.c.study_uid == study_uid)
        row = conn.execute(stmt.with_for_update() if lock else stmt).first()
        if row is None:
            return None
        order = dict(row._mapping)
        steps = [dict(r._mapping) for r in conn.execute(
            select(STEPS).where(STEPS.c.order_pk == order["pk"]).order_by(STEPS.c.sps_id))]
        return order, steps

    @staticmethod
    def _steps_of(conn: Connection, pks: list[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {pk: [] for pk in pks}
        if pks:
            for r in conn.execute(select(STEPS).where(STEPS.c.order_pk.in_(pks)).order_by(STEPS.c.sps_id)):
                out[r.order_pk].append(dict(r._mapping))
        return out

    def by_identifier(self, conn: Connection, value: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Orders (at most MAX_CANDIDATES, by pk) with ``value`` in an identifier column, with their steps: the same
        answer as ``search(identifier_value=value, count=MAX_CANDIDATES)`` from a statement built once."""
        rows = [dict(r._mapping) for r in conn.execute(_BY_IDENTIFIER, {"value": value})]
        steps = self._steps_of(conn, [r["pk"] for r in rows])
        return [(r, steps[r["pk"]]) for r in rows]

    def search(self, *, patient_id: str | None = None, issuer: str | None = None, identifier_value: str | None = None,
               status: list[str] | None = None, authored: list[list[tuple[str, datetime, datetime]]] | None = None,
               patients: list[tuple[str, str | None]] | None = None, pks: list[list[int]] | None = None,
               count: int | None = 50, offset: int = 0,
               conn: Connection | None = None) -> tuple[list[tuple[dict[str, Any], list[dict[str, Any]]]], int]:
        """Orders matching all given parameters, by pk, with their steps, and the total count.
        ``authored``: AND of OR groups of (prefix, start, end) of FHIR date search (eq ne lt le gt ge sa eb);
        ``patients``: any of these (Patient ID, issuer or None for any issuer); ``pks``: AND of OR groups of order
        pks (``_id``)."""
        cond: list[ColumnElement[bool]] = [ORDERS.c.pk.in_(group) if group else false() for group in pks or []]
        if patient_id is not None:
            cond.append(ORDERS.c.patient_id == patient_id)
        if issuer is not None:
            cond.append(ORDERS.c.issuer_of_patient_id == issuer)
        if patients is not None:
            cond.append(or_(false(), *(ORDERS.c.patient_id == pid if iss is None else
                                       and_(ORDERS.c.patient_id == pid, ORDERS.c.issuer_of_patient_id == iss)
                                       for pid, iss in patients)))
        if identifier_value is not None:
            cond.append(or_(*(c == identifier_value for c in IDENTIFIER_COLUMNS)))
        if status:
            cond.append(or_(*(status_condition(s) for s in status)))
        for group in authored or []:
            cond.append(or_(false(), *(_date_condition(prefix, lo, hi) for prefix, lo, hi in group)))
        if conn is None:
            with self.db.read() as c:
                return self._search(c, cond, count, offset)
        return self._search(conn, cond, count, offset)

    def _search(self, conn: Connection, cond: list[ColumnElement[bool]], count: int | None,
                offset: int) -> tuple[list[tuple[dict[str, Any], list[dict[str, Any]]]], int]:
        """A page that is not full tells the total itself (a count query only when it may be larger)."""
        where = and_(*cond) if cond else ORDERS.c.pk.is_not(None)
        stmt = _ORDERS.where(where).order_by(ORDERS.c.pk).offset(offset)
        rows = [dict(r._mapping) for r in conn.execute(stmt.limit(count) if count is not None else stmt)]
        if (count is None or len(rows) < count) and (rows or not offset):
            total = offset + len(rows)
        else:
            total = int(conn.execute(select(func.count()).select_from(ORDERS).where(where)).scalar_one())
        steps = self._steps_of(conn, [r["pk"] for r in rows])
        return [(r, steps[r["pk"]]) for r in rows], total


def _date_condition(prefix: str, lo: datetime, hi: datetime) -> ColumnElement[bool]:
    col = ORDERS.c.authored_at
    conditions = {"eq": and_(col >= lo, col < hi), "ne": or_(col < lo, col >= hi), "lt": col < lo, "le": col < hi,
                  "gt": col >= hi, "ge": col >= lo, "sa": col >= hi, "eb": col < lo, "ap": and_(col >= lo, col < hi)}
    if prefix not in conditions:
        raise HubError("invalid_query_value", f"unsupported date prefix {prefix!r}", attribute="authored")
    return conditions[prefix]
