"""Criteria and SQL predicates of the FHIR ImagingStudy search (R4 search.html), for :mod:`hub.store.fhir`.

Criteria are AND-ed lists of OR-ed alternatives (FHIR search: repeated parameter = AND, comma = OR).

``started`` compares instants (R4 search.html#date): studies and scheduled steps keep their start as a UTC
instant (``started_at``, written with the row: Study Date/Time or the step's start in the zone of Timezone
Offset From UTC (0008,0201) where the study or order carries one, PS3.3 C.12.1.1.8, else the hub's zone), so
a search value, a range in the hub's zone, is turned into UTC and compared on that indexed column in SQL.

Tokens (R4 search.html#token): ``system|code`` must match both, ``|code`` an identifier without system,
``code`` any system. The Accession Number's system (Issuer of Accession Number Sequence (0008,0051) of the
order) is not an indexed column: rows with that accession value are read and their system checked here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, exists, false, func, or_, select, true

from hub.store.models import SE, ST
from hub.store.order_models import ORDERS, STEPS
from mappings.ascii import row_id
from mappings.dicom_to_fhir_values import entity_system, seq_items
from mappings.fhir_values import within_calendar

CANCELLED_ORDERS = ("CA", "DC", "OC", "OD")  # HL7 table 0038 / ORC-1 codes that end an order
CANCELLED_STEPS = ("CANCELED", "DISCONTINUED")
OFFSET_KEY = '%"00080201"%'  # DICOM JSON (PS3.18 F.2) text holding a Timezone Offset From UTC


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
    # ("uid" | "accession", value, system): system None = any, "" = none (accession only)
    identifiers: list[list[tuple[str, str, str | None]]] = field(default_factory=list)
    started: list[list[DateParam]] = field(default_factory=list)  # in the hub's zone, naive
    modalities: list[list[str]] = field(default_factory=list)
    statuses: list[list[str]] = field(default_factory=list)
    based_on: list[list[tuple[str, str | None]]] = field(default_factory=list)  # (accession/placer/filler, system)
    last_updated: list[list[DateParam]] = field(default_factory=list)  # UTC, naive
    nothing: bool = False  # a criterion no study can meet (unknown patient, foreign endpoint)


@dataclass
class PatientCriteria:
    ids: list[list[str]] = field(default_factory=list)
    identifiers: list[list[tuple[str | None, str]]] = field(default_factory=list)  # (system, value) tokens
    names: list[list[tuple[str, str]]] = field(default_factory=list)  # (modifier, normalized value)
    exact_names: list[list[str]] = field(default_factory=list)  # name:exact as sent (case and accents count)
    birthdate: list[list[DateParam]] = field(default_factory=list)
    genders: list[list[str]] = field(default_factory=list)  # DICOM sex: M, F, O, "" (unknown)


Bound = Callable[[str, datetime], ColumnElement[bool]]


# --------------------------------------------------------------------------- generic predicates
def date_bound(date_col: Any, time_col: Any, op: str, at: datetime) -> ColumnElement[bool]:  # noqa: ANN401
    """``(date, time) >= at`` or ``< at`` on DA/TM columns, the date part usable by its index."""
    # not strftime("%Y"): it writes year 999 as "999", which compares after every 4-digit year
    d = f"{at.year:04d}{at.month:02d}{at.day:02d}"
    t = at.strftime("%H%M%S") + (f".{at.microsecond:06d}" if at.microsecond else "")
    tm = func.coalesce(time_col, "")
    if op == ">=":
        return date_col >= d if t == "000000" else and_(date_col >= d, or_(date_col > d, tm >= t))
    return date_col < d if t == "000000" else and_(date_col <= d, or_(date_col < d, tm < t))


def date_param(date_col: Any, p: DateParam, bound: Bound) -> ColumnElement[bool]:  # noqa: ANN401
    """FHIR date prefixes (R4 3.1.1.4.1.1) on a point in time: the resource's moment vs the range."""
    ge_low, lt_high = bound(">=", p.low), bound("<", p.high)
    return {
        "eq": and_(ge_low, lt_high), "ne": and_(date_col.is_not(None), ~and_(ge_low, lt_high)),
        "ge": ge_low, "gt": bound(">=", p.high), "sa": bound(">=", p.high),
        "le": lt_high, "lt": bound("<", p.low), "eb": bound("<", p.low),
    }[p.prefix]


def stamp_param(col: Any, p: DateParam) -> ColumnElement[bool]:  # noqa: ANN401
    return {"eq": and_(col >= p.low, col < p.high), "ne": or_(col < p.low, col >= p.high), "ge": col >= p.low,
            "gt": col >= p.high, "sa": col >= p.high, "le": col < p.high, "lt": col < p.low,
            "eb": col < p.low}[p.prefix]


def any_of(groups: Sequence[ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*groups) if groups else false()


def in_keys(col: Any, keys: Sequence[int]) -> ColumnElement[bool]:  # noqa: ANN401
    return col.in_(keys) if keys else false()


def order_cancelled() -> ColumnElement[bool]:
    live = exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk, STEPS.c.status.not_in(CANCELLED_STEPS)))
    some = exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk))
    return or_(ORDERS.c.status.in_(CANCELLED_ORDERS), and_(some, ~live))


def hub_to_utc(local: datetime, tz: tzinfo | None) -> datetime:
    """A naive time in the hub's zone ``tz`` (None: the system's) as naive UTC; a time whose UTC instant lies
    before year 1 or after year 9999 is that end of the range (``started=0001-01-01`` east of UTC)."""
    return within_calendar(lambda: (local.replace(tzinfo=tz) if tz is not None else local.astimezone())
                           .astimezone(UTC).replace(tzinfo=None), local)


def accession_system(attrs_text: str | None) -> str:
    """The Identifier.system of an Accession Number as rendered (mapping-reference 3.1): from the order's
    Issuer of Accession Number Sequence (0008,0051); ``""``: none."""
    attrs = json.loads(attrs_text) if attrs_text else {}
    return entity_system(seq_items(attrs, "00080051"))


def _order_number_system(row: Any, value: str) -> str | None:  # noqa: ANN401 - a Row of the orders table
    """The system of the placer (0040,0026) or filler (0040,0027) issuer of the order number ``value``."""
    attrs = json.loads(row.attrs) if row.attrs else {}
    tag = "00400026" if row.placer_order == value else "00400027"
    return entity_system(seq_items(attrs, tag))


# --------------------------------------------------------------------------- per search
class Where:
    """Builds the WHERE clauses of one search; reads the rows that SQL alone cannot decide on ``conn``."""

    def __init__(self, conn: Connection, tz: tzinfo | None) -> None:
        self.conn, self.tz = conn, tz

    # ------------------------------------------------------------------ started, as instants
    def _started(self, kind: str, p: DateParam) -> ColumnElement[bool]:
        col = ST.c.started_at if kind == "a" else STEPS.c.started_at
        return stamp_param(col, DateParam(p.prefix, hub_to_utc(p.low, self.tz), hub_to_utc(p.high, self.tz)))

    # ------------------------------------------------------------------ tokens with a system
    def _accession(self, kind: str, value: str, system: str | None) -> ColumnElement[bool]:
        col = ST.c.accession_number if kind == "a" else ORDERS.c.accession_number
        if system is None:
            return col == value
        if kind == "a":
            rows = self.conn.execute(select(ST.c.pk, ORDERS.c.attrs).select_from(
                ST.outerjoin(ORDERS, ORDERS.c.study_uid == ST.c.study_uid)).where(col == value)).all()
            key_col = ST.c.pk
        else:
            rows = self.conn.execute(select(ORDERS.c.pk, ORDERS.c.attrs).where(col == value)).all()
            key_col = ORDERS.c.pk
        return in_keys(key_col, [int(pk) for pk, attrs in rows if accession_system(attrs) == system])

    def _identifier(self, kind: str, ident: tuple[str, str, str | None]) -> ColumnElement[bool]:
        what, value, system = ident
        if what == "uid":
            return (ST.c.study_uid if kind == "a" else ORDERS.c.study_uid) == value
        return self._accession(kind, value, system)

    def _based_on(self, kind: str, tokens: list[tuple[str, str | None]]) -> ColumnElement[bool]:
        """basedOn identifiers: the accession and the order's placer / filler numbers, each with the system of
        its issuer (Issuer of Accession Number / Order Placer / Order Filler Identifier Sequence)."""
        alternatives: list[ColumnElement[bool]] = []
        for value, system in tokens:
            alternatives.append(self._accession(kind, value, system))
            placer = or_(ORDERS.c.placer_order == value, ORDERS.c.filler_order == value)
            if system is not None:  # the system is in the order's attrs: the few candidates are read
                rows = self.conn.execute(select(ORDERS.c.pk, ORDERS.c.placer_order, ORDERS.c.filler_order,
                                                ORDERS.c.attrs).where(placer)).all()
                placer = in_keys(ORDERS.c.pk, [int(r.pk) for r in rows if _order_number_system(r, value) == system])
            alternatives.append(placer if kind == "o" else exists(select(ORDERS.c.pk).where(
                ORDERS.c.study_uid == ST.c.study_uid, placer)))
        return any_of(alternatives)

    # ------------------------------------------------------------------ the two halves of the UNION
    def archive(self, c: StudyCriteria) -> list[ColumnElement[bool]]:
        w: list[ColumnElement[bool]] = []
        for group in c.ids:
            w.append(ST.c.public_id.in_([i for i in group if not i.startswith("o-")]))
        for keys in c.patients:
            w.append(ST.c.patient_pk.in_([k.archive_pk for k in keys if k.archive_pk is not None]))
        for idents in c.identifiers:
            w.append(any_of([self._identifier("a", i) for i in idents]))
        for dates in c.started:
            w.append(any_of([self._started("a", p) for p in dates]))
        for dates in c.last_updated:
            w.append(any_of([stamp_param(ST.c.updated_at, p) for p in dates]))
        for mods in c.modalities:
            w.append(exists(select(SE.c.pk).where(SE.c.study_pk == ST.c.pk, SE.c.modality.in_(mods))))
        for statuses in c.statuses:
            w.append(true() if "available" in statuses else false())
        for tokens in c.based_on:
            w.append(self._based_on("a", tokens))
        return w

    def orders(self, c: StudyCriteria) -> list[ColumnElement[bool]]:
        w: list[ColumnElement[bool]] = [~exists(select(ST.c.pk).where(ST.c.study_uid == ORDERS.c.study_uid))]
        for group in c.ids:
            pks = [pk for i in group if i.startswith("o-") and (pk := row_id(i[2:])) is not None]
            w.append(ORDERS.c.pk.in_(pks))
        for keys in c.patients:
            w.append(any_of([ORDERS.c.patient_id == k.patient_id if k.issuer is None else
                             and_(ORDERS.c.patient_id == k.patient_id, ORDERS.c.issuer_of_patient_id == k.issuer)
                             for k in keys]))
        for idents in c.identifiers:
            w.append(any_of([self._identifier("o", i) for i in idents]))
        for dates in c.started:  # an order matches when one of its scheduled steps starts in range
            w.append(ORDERS.c.pk.in_(select(STEPS.c.order_pk).where(any_of([self._started("o", p) for p in dates]))))
        for dates in c.last_updated:
            w.append(any_of([stamp_param(ORDERS.c.updated_at, p) for p in dates]))
        for mods in c.modalities:
            w.append(exists(select(STEPS.c.pk).where(STEPS.c.order_pk == ORDERS.c.pk, STEPS.c.modality.in_(mods))))
        for statuses in c.statuses:
            cancelled = order_cancelled()
            w.append(any_of([cond for s, cond in (("registered", ~cancelled), ("cancelled", cancelled))
                             if s in statuses]))
        for tokens in c.based_on:
            w.append(self._based_on("o", tokens))
        return w

