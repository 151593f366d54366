"""SQL of the FHIR read side: ImagingStudy and Patient searches over the archive index and the orders.

An ImagingStudy is a stored study (``studies``) or an order whose Study UID has no stored study yet
(``orders``); a search is one ``UNION ALL`` of both, filtered on indexed columns (study date/time,
patient, accession, Study UID, series modality; for orders the scheduled steps' start date and
modality), sorted and cut to one page in SQL; the page's rows are then read in a few ``IN`` queries.
Criteria are AND-ed lists of OR-ed alternatives (FHIR search: repeated parameter = AND, comma = OR).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)

from hub.store.db import Database
from hub.store.models import SE, ST, I, P
from hub.store.order_models import MERGES, ORDERS, STEPS

CANCELLED_ORDERS = ("CA", "DC", "OC", "OD")  # HL7 table 0038 / ORC-1 codes that end an order
CANCELLED_STEPS = ("CANCELED", "DISCONTINUED")


@dataclass(frozen=True)
class DateParam:
    """A FHIR date search value as a half-open local range ``[low, high)`` and its prefix (eq, ge ...)."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class PatientKey:
    """Who a Patient id denotes: an archive patient (``archive_pk``) or an order-only identity."""

    patient_id: str
    issuer: str | None = None  # None: any issuer (archive patients)
    archive_pk: int | None = None


@dataclass
class StudyCriteria:
    ids: list[list[str]] = field(default_factory=list)
    patients: list[list[PatientKey]] = field(default_factory=list)
    identifiers: list[list[tuple[str, str]]] = field(default_factory=list)  # ("uid" | "accession", value)
    started: list[DateParam] = field(default_factory=list)
    modalities: list[list[str]] = field(default_factory=list)
    statuses: list[list[str]] = field(default_factory=list)
    based_on: list[list[str]] = field(default_factory=list)  # accession, placer or filler number
    last_updated: list[DateParam] = field(default_factory=list)
    nothing: bool = False  # a criterion no study can meet (unknown patient, foreign endpoint)


@dataclass
class PatientCriteria:
    ids: list[list[str]] = field(default_factory=list)
    identifiers: list[list[str]] = field(default_factory=list)  # Patient ID values
    names: list[list[tuple[str, str]]] = field(default_factory=list)  # (modifier, normalized value)
    birthdate: list[DateParam] = field(default_factory=list)
    genders: list[list[str]] = field(default_factory=list)  # DICOM sex: M, F, O, "" (unknown)


# --------------------------------------------------------------------------- predicates
def _date_bound(date_col: Any, time_col: Any, op: str, at: datetime) -> ColumnElement[bool]:  # noqa: ANN401
    """``(date, time) >= at`` or ``< at`` on DA/TM columns, the date part usable by its index."""
    d, t = at.strftime("%Y%m%d"), at.strftime("%H%M%S") + (f".{at.microsecond:06d}" if at.microsecond else "")
    tm = func.coalesce(time_col, "")
    if op == ">=":
        return date_col >= d if t == "000000" else and_(date_col >= d, or_(date_col > d, tm >= t))
    return date_col < d if t == "000000" else and_(date_col <= d, or_(date_col < d, tm < t))


def _date_param(date_col: Any, time_col: Any, p: DateParam) -> ColumnElement[bool]:  # noqa: ANN401
    """FHIR date prefixes (R4 3.1.1.4.1.1) on a point in time: the resource's moment vs the range."""
    ge_low, lt_high = _date_bound(date_col, time_col, ">=", p.low), _date_bound(date_col, time_col, "<", p.high)
    return {
        "eq": and_(ge_low, lt_high), "ne": and_(date_col.is_not(None), ~and_(ge_low, lt_high)),
        "ge": ge_low, "gt": _date_bound(date_col, time_col, ">=", p.high), "sa": _date_bound(
            date_col, time_col, ">=", p.high),
        "le": lt_high, "lt": _date_bound(date_col, time_col, "<", p.low), "eb": _date_bound(
            date_col, time_col, "<", p.low),
    }[p.prefix]


def _stamp_param(col: Any, p: DateParam) -> ColumnElement[bool]:  # noqa: ANN401
    return {"eq": and_(col >= p.low, col < p.high), "ne": or_(col < p.low, col >= p.high), "ge": col >= p.low,
            "gt": col >= p.high, "sa": col >= p.high, "le": col < p.high, "lt": col < p.low,
            "eb": col < p.low}[p.prefix]


def _any(groups: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*groups) if groups else false()


def _order_cancelled() -> ColumnElement[bool]:
    live = exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk, STEPS.c.status.not_in(CANCELLED_STEPS)))
    some = exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk))
    return or_(ORDERS.c.status.in_(CANCELLED_ORDERS), and_(some, ~live))


def _archive_where(c: StudyCriteria) -> list[ColumnElement[bool]]:
    w: list[ColumnElement[bool]] = []
    for group in c.ids:
        w.append(ST.c.public_id.in_([i for i in group if not i.startswith("o-")]))
    for keys in c.patients:
        w.append(ST.c.patient_pk.in_([k.archive_pk for k in keys if k.archive_pk is not None]))
    for idents in c.identifiers:
        w.append(_any([(ST.c.study_uid if k == "uid" else ST.c.accession_number) == v for k, v in idents]))
    for p in c.started:
        w.append(_date_param(ST.c.study_date, ST.c.study_time, p))
    for p in c.last_updated:
        w.append(_stamp_param(ST.c.updated_at, p))
    for mods in c.modalities:
        w.append(exists(select(SE.c.pk).where(SE.c.study_pk == ST.c.pk, SE.c.modality.in_(mods))))
    for statuses in c.statuses:
        w.append(true() if "available" in statuses else false())
    for values in c.based_on:
        w.append(or_(ST.c.accession_number.in_(values), exists(select(ORDERS.c.pk).where(
            ORDERS.c.study_uid == ST.c.study_uid,
            or_(ORDERS.c.placer_order.in_(values), ORDERS.c.filler_order.in_(values))))))
    return w


def _order_where(c: StudyCriteria) -> list[ColumnElement[bool]]:
    w: list[ColumnElement[bool]] = [~exists(select(ST.c.pk).where(ST.c.study_uid == ORDERS.c.study_uid))]
    for group in c.ids:
        pks = [int(i[2:]) for i in group if i.startswith("o-") and i[2:].isdigit()]
        w.append(ORDERS.c.pk.in_(pks))
    for keys in c.patients:
        w.append(_any([ORDERS.c.patient_id == k.patient_id if k.issuer is None else
                       and_(ORDERS.c.patient_id == k.patient_id, ORDERS.c.issuer_of_patient_id == k.issuer)
                       for k in keys]))
    for idents in c.identifiers:
        w.append(_any([(ORDERS.c.study_uid if k == "uid" else ORDERS.c.accession_number) == v for k, v in idents]))
    for p in c.started:  # an order matches when one of its scheduled steps starts in range
        w.append(ORDERS.c.pk.in_(select(STEPS.c.order_pk).where(_date_param(STEPS.c.start_date, STEPS.c.start_time,
                                                                            p))))
    for p in c.last_updated:
        w.append(_stamp_param(ORDERS.c.updated_at, p))
    for mods in c.modalities:
        w.append(exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk, STEPS.c.modality.in_(mods))))
    for statuses in c.statuses:
        cancelled = _order_cancelled()
        w.append(_any([cond for s, cond in (("registered", ~cancelled), ("cancelled", cancelled)) if s in statuses]))
    for values in c.based_on:
        w.append(or_(ORDERS.c.accession_number.in_(values), ORDERS.c.placer_order.in_(values),
                     ORDERS.c.filler_order.in_(values)))
    return w


SORT_KEYS = {"started": "started", "_lastUpdated": "updated_at", "_id": "rid"}


class FhirRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ ImagingStudy
    def study_page(self, c: StudyCriteria, sort: list[tuple[str, bool]], offset: int,
                   limit: int) -> tuple[int, list[tuple[str, int]]]:
        """(total, [(kind "a"/"o", pk)]) of one page; ``sort``: (key of :data:`SORT_KEYS`, descending)."""
        if c.nothing:
            return 0, []
        started_o = select(func.min(STEPS.c.start_date + STEPS.c.start_time)).where(
            STEPS.c.order_pk == ORDERS.c.pk).scalar_subquery()
        archive = select(literal("a").label("kind"), ST.c.pk.label("pk"),
                         (func.coalesce(ST.c.study_date, "") + func.coalesce(ST.c.study_time, "")).label("started"),
                         ST.c.updated_at.label("updated_at"), ST.c.public_id.label("rid")).where(*_archive_where(c))
        orders = select(literal("o").label("kind"), ORDERS.c.pk.label("pk"),
                        func.coalesce(started_o, "").label("started"), ORDERS.c.updated_at.label("updated_at"),
                        (literal("o-") + func.cast(ORDERS.c.pk, ST.c.public_id.type)).label("rid")
                        ).where(*_order_where(c))
        both = union_all(archive, orders).subquery()
        order_by = [both.c[SORT_KEYS[k]].desc() if desc else both.c[SORT_KEYS[k]] for k, desc in sort]
        order_by += [both.c.kind, both.c.pk]
        with self.db.read() as conn:
            rows = conn.execute(select(both.c.kind, both.c.pk).order_by(*order_by).offset(offset).limit(limit)).all()
            if offset == 0 and len(rows) < limit:
                total = len(rows)
            else:
                total = int(conn.execute(select(func.count()).select_from(both)).scalar() or 0)
        return total, [(str(k), int(pk)) for k, pk in rows]

    def archive_studies(self, pks: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Stored studies with ``patient`` (row), ``series``, ``instances`` (by series pk), ``order``."""
        if not pks:
            return {}
        with self.db.read() as conn:
            studies = {r.pk: dict(r._mapping) for r in conn.execute(select(ST).where(ST.c.pk.in_(pks)))}
            if not studies:
                return {}
            patients = {r.pk: dict(r._mapping) for r in conn.execute(
                select(P.c.pk, P.c.public_id, P.c.patient_id).where(
                    P.c.pk.in_({s["patient_pk"] for s in studies.values()})))}
            series = [dict(r._mapping) for r in conn.execute(
                select(SE.c.pk, SE.c.study_pk, SE.c.series_uid, SE.c.modality, SE.c.series_number,
                       SE.c.series_description, SE.c.body_part_examined, SE.c.series_date, SE.c.series_time,
                       SE.c.main_tags).where(SE.c.study_pk.in_(list(studies))))]
            instances: dict[int, list[dict[str, Any]]] = {}
            if series:
                for r in conn.execute(select(I.c.series_pk, I.c.sop_instance_uid, I.c.sop_class_uid,
                                             I.c.instance_number).where(I.c.series_pk.in_([s["pk"] for s in series]))):
                    instances.setdefault(r.series_pk, []).append(dict(r._mapping))
            orders = {r.study_uid: dict(r._mapping) for r in conn.execute(
                select(ORDERS).where(ORDERS.c.study_uid.in_([s["study_uid"] for s in studies.values()])))}
        for s in studies.values():
            s["patient"] = patients.get(s["patient_pk"])
            s["series"] = [x for x in series if x["study_pk"] == s["pk"]]
            s["instances"] = instances
            s["order"] = orders.get(s["study_uid"])
        return studies

    def orders(self, pks: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Orders with their ``steps`` and ``archive_patient`` (public id of a stored patient of the same ID)."""
        if not pks:
            return {}
        with self.db.read() as conn:
            orders = {r.pk: dict(r._mapping) for r in conn.execute(select(ORDERS).where(ORDERS.c.pk.in_(pks)))}
            steps: dict[int, list[dict[str, Any]]] = {}
            for r in conn.execute(select(STEPS).where(STEPS.c.order_pk.in_(list(orders))).order_by(STEPS.c.pk)):
                steps.setdefault(r.order_pk, []).append(dict(r._mapping))
            archived = self._archive_public_ids(conn, {o["patient_id"] for o in orders.values()})
        for o in orders.values():
            o["steps"] = steps.get(o["pk"], [])
            o["archive_patient"] = archived.get(o["patient_id"])
        return orders

    @staticmethod
    def _archive_public_ids(conn: Connection, patient_ids: set[str]) -> dict[str, str]:
        if not patient_ids:
            return {}
        rows = conn.execute(select(P.c.patient_id, P.c.public_id).where(P.c.patient_id.in_(patient_ids)))
        return {r.patient_id: r.public_id for r in rows}

    def study_pk(self, public_id: str) -> int | None:
        with self.db.read() as conn:
            return conn.execute(select(ST.c.pk).where(ST.c.public_id == public_id)).scalar()

    def order_study(self, order_pk: int) -> tuple[str, int | None] | None:
        """(Study UID, stored study pk or None) of an order."""
        with self.db.read() as conn:
            row = conn.execute(select(ORDERS.c.study_uid, ST.c.pk).select_from(ORDERS).outerjoin(
                ST, ST.c.study_uid == ORDERS.c.study_uid).where(ORDERS.c.pk == order_pk)).first()
        return None if row is None else (str(row[0]), row[1])

    # ------------------------------------------------------------------ Patient
    def archive_patients(self, c: PatientCriteria | None = None, public_ids: Sequence[str] = (),
                         patient_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Archive patients matching ``c`` (or with these public ids / Patient IDs), with the issuer and
        patient module of their latest order (``order_issuer``, ``order_attrs``)."""
        w: list[ColumnElement[bool]] = []
        if public_ids:
            w.append(P.c.public_id.in_(public_ids))
        if patient_ids:
            w.append(P.c.patient_id.in_(patient_ids))
        if c is not None:
            w += [P.c.public_id.in_(g) for g in c.ids] + [P.c.patient_id.in_(g) for g in c.identifiers]
            w += [_any([_name_match(P.c.patient_name_norm, m, v) for m, v in g]) for g in c.names]
            w += [_date_param(P.c.birth_date, literal(None), p) for p in c.birthdate]
            w += [_any([P.c.sex.in_([s for s in g if s]),
                        *([or_(P.c.sex.is_(None), P.c.sex == "")] if "" in g else [])]) for g in c.genders]
        with self.db.read() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(P.c.pk, P.c.public_id, P.c.patient_id, P.c.patient_name, P.c.birth_date, P.c.sex,
                       P.c.updated_at).where(*w).order_by(P.c.public_id))]
            latest = self._latest_orders(conn, [r["patient_id"] for r in rows], None)
        for r in rows:
            o = latest.get((r["patient_id"], None))
            r["order_issuer"], r["order_attrs"] = (o["issuer_of_patient_id"], o["patient_attrs"]) if o else ("", None)
        return rows

    def order_patients(self, c: PatientCriteria | None = None,
                       identities: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """Patients known from orders only (no stored patient of that ID): the latest order of each
        (Patient ID, issuer); birth date and sex are matched by the caller on ``patient_attrs``."""
        w: list[ColumnElement[bool]] = [~exists(select(P.c.pk).where(P.c.patient_id == ORDERS.c.patient_id))]
        if identities:
            w.append(_any([and_(ORDERS.c.patient_id == p, ORDERS.c.issuer_of_patient_id == i) for p, i in identities]))
        if c is not None:
            w += [ORDERS.c.patient_id.in_(g) for g in c.identifiers]
            w += [_any([_name_match(ORDERS.c.patient_name_norm, m, v) for m, v in g]) for g in c.names]
        with self.db.read() as conn:
            keys = conn.execute(select(ORDERS.c.patient_id, ORDERS.c.issuer_of_patient_id).where(*w).distinct()).all()
            latest = self._latest_orders(conn, [k[0] for k in keys], [k[1] for k in keys])
        return [latest[(k[0], k[1])] for k in keys if (k[0], k[1]) in latest]

    @staticmethod
    def _latest_orders(conn: Connection, pids: list[str], issuers: list[str] | None) -> dict[tuple[str, Any], Any]:
        out: dict[tuple[str, Any], dict[str, Any]] = {}
        for i in range(0, len(pids), 500):
            rows = conn.execute(select(ORDERS.c.patient_id, ORDERS.c.issuer_of_patient_id, ORDERS.c.patient_attrs,
                                       ORDERS.c.updated_at).where(ORDERS.c.patient_id.in_(set(pids[i:i + 500])))
                                .order_by(ORDERS.c.updated_at, ORDERS.c.pk))
            for r in rows:
                key = (r.patient_id, None if issuers is None else r.issuer_of_patient_id)
                out[key] = dict(r._mapping)
        return out

    def order_identities(self) -> list[tuple[str, str]]:
        """Every (Patient ID, issuer) of the orders (to resolve an order-only Patient id)."""
        with self.db.read() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                select(ORDERS.c.patient_id, ORDERS.c.issuer_of_patient_id).distinct())]

    def merges(self, prior_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """ADT^A40 pointers (latest first), all or those of these prior Patient IDs."""
        q = select(MERGES).order_by(MERGES.c.pk.desc())
        if prior_ids:
            q = q.where(MERGES.c.prior_patient_id.in_(prior_ids))
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


def _like(col: Any, head: str, value: str, tail: str) -> ColumnElement[bool]:  # noqa: ANN401
    """``col LIKE head || value || tail`` with ``value`` literal (its %, _ and \\ escaped)."""
    escaped = "".join("\\" + ch if ch in "%_\\" else ch for ch in value)
    pattern = head + escaped + tail
    return col.like(pattern, escape="\\") if escaped != value else col.like(pattern)


def _name_match(col: Any, modifier: str, value: str) -> ColumnElement[bool]:  # noqa: ANN401
    """FHIR string search on a normalized PN (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``): by default a
    case/accent-insensitive starts-with on any name part; ``:contains`` anywhere; ``:exact`` a whole part."""
    if modifier == "exact":
        return or_(col == value, _like(col, "", value, "^%"), _like(col, "%^", value, ""),
                   _like(col, "%^", value, "^%"))
    if modifier == "contains":
        return _like(col, "%", value, "%")
    return or_(_like(col, "", value, "%"), _like(col, "%^", value, "%"), _like(col, "% ", value, "%"))
