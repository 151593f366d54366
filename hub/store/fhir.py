"""SQL of the FHIR read side: ImagingStudy and Patient searches over the archive index and the orders.

An ImagingStudy is a stored study (``studies``) or an order whose Study UID has no stored study yet
(``orders``); a search is one ``UNION ALL`` of both, filtered on indexed columns (the study's start as a
UTC instant, patient, accession, Study UID, series modality; for orders the scheduled steps' start instant
and modality; the predicates are in :mod:`hub.store.fhir_search`), sorted and cut to one page in SQL; the
page's rows are then read in a few ``IN`` queries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import tzinfo
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    exists,
    func,
    literal,
    or_,
    select,
    union_all,
)

from hub.store.db import Database
from hub.store.fhir_search import (
    OFFSET_KEY,
    DateParam,
    PatientCriteria,
    PatientKey,
    StudyCriteria,
    Where,
    any_of,
    date_bound,
    date_param,
)
from hub.store.models import SE, ST, I, P
from hub.store.order_models import MERGES, ORDERS, STEPS
from mappings.dicom_to_fhir_values import offset_of

__all__ = ["DateParam", "FhirRepository", "PatientCriteria", "PatientKey", "StudyCriteria"]

SORT_KEYS = {"started": "started", "_lastUpdated": "updated_at", "_id": "rid"}


class FhirRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ ImagingStudy
    def study_page(self, c: StudyCriteria, sort: list[tuple[str, bool]], offset: int,
                   limit: int, tz: tzinfo | None = None) -> tuple[int, list[tuple[str, int]]]:
        """(total, [(kind "a"/"o", pk)]) of one page; ``sort``: (key of :data:`SORT_KEYS`, descending);
        ``tz``: the hub's zone, that of ``c.started`` and of DICOM times without offset (None: local)."""
        if c.nothing:
            return 0, []
        with self.db.read() as conn:
            return self._study_page(conn, c, sort, offset, limit, tz)

    def _study_page(self, conn: Connection, c: StudyCriteria, sort: list[tuple[str, bool]], offset: int,
                    limit: int, tz: tzinfo | None) -> tuple[int, list[tuple[str, int]]]:
        where = Where(conn, tz)
        started_o = select(func.min(STEPS.c.started_at)).where(STEPS.c.order_pk == ORDERS.c.pk).scalar_subquery()
        archive = select(literal("a").label("kind"), ST.c.pk.label("pk"), ST.c.started_at.label("started"),
                         ST.c.updated_at.label("updated_at"), ST.c.public_id.label("rid")).where(*where.archive(c))
        orders = select(literal("o").label("kind"), ORDERS.c.pk.label("pk"),
                        started_o.label("started"), ORDERS.c.updated_at.label("updated_at"),
                        (literal("o-") + func.cast(ORDERS.c.pk, ST.c.public_id.type)).label("rid")
                        ).where(*where.orders(c))
        both = union_all(archive, orders).subquery()
        # A study without a start sorts first ascending and last descending, on both databases.
        order_by = [both.c[SORT_KEYS[k]].desc().nulls_last() if desc else both.c[SORT_KEYS[k]].asc().nulls_first()
                    for k, desc in sort]
        order_by += [both.c.kind, both.c.pk]
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
            offsets = self._study_offsets(conn, list(studies))
        for s in studies.values():
            s["tz_offset"] = offsets.get(s["pk"], "")
            s["patient"] = patients.get(s["patient_pk"])
            s["series"] = [x for x in series if x["study_pk"] == s["pk"]]
            s["instances"] = instances
            s["order"] = orders.get(s["study_uid"])
        return studies

    @staticmethod
    def _study_offsets(conn: Connection, study_pks: list[int]) -> dict[int, str]:
        """Timezone Offset From UTC (0008,0201) of stored studies, from the first instance's DICOM JSON."""
        first = select(func.min(I.c.pk)).select_from(I.join(SE, SE.c.pk == I.c.series_pk)).where(
            SE.c.study_pk.in_(study_pks)).group_by(SE.c.study_pk)
        rows = conn.execute(select(SE.c.study_pk, I.c.metadata_json).select_from(I.join(SE, SE.c.pk == I.c.series_pk))
                            .where(I.c.pk.in_(first), I.c.metadata_json.like(OFFSET_KEY))).all()
        return {int(pk): offset_of(json.loads(text or "{}")) for pk, text in rows}

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
            w += [P.c.public_id.in_(g) for g in c.ids]
            w += [or_(P.c.patient_id.in_([v for _, v in g]), P.c.patient_id.in_(
                select(ORDERS.c.patient_id).where(_mentions(ORDERS.c.patient_attrs, [v for _, v in g]))))
                for g in c.identifiers]
            w += [any_of([_name_match(P.c.patient_name_norm, m, v) for m, v in g]) for g in c.names]
            w += [any_of([date_param(P.c.birth_date, p, _birth_bound) for p in g]) for g in c.birthdate]
            w += [any_of([P.c.sex.in_([s for s in g if s]),
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
        (Patient ID, issuer); birth date, sex and the exact identifiers (with system) are matched by the
        caller on ``patient_attrs`` (SQL finds candidates by Patient ID or by a value in the module)."""
        w: list[ColumnElement[bool]] = [~exists(select(P.c.pk).where(P.c.patient_id == ORDERS.c.patient_id))]
        if identities:
            w.append(any_of([and_(ORDERS.c.patient_id == p, ORDERS.c.issuer_of_patient_id == i)
                             for p, i in identities]))
        if c is not None:
            w += [or_(ORDERS.c.patient_id.in_([v for _, v in g]), _mentions(ORDERS.c.patient_attrs, [v for _, v in g]))
                  for g in c.identifiers]
            w += [any_of([_name_match(ORDERS.c.patient_name_norm, m, v) for m, v in g]) for g in c.names]
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

    def merges(self, prior_ids: Sequence[str] = (), survivor_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """ADT^A40 pointers (latest first): all, or those of these prior / surviving Patient IDs."""
        q = select(MERGES).order_by(MERGES.c.pk.desc())
        if prior_ids or survivor_ids:
            q = q.where(or_(MERGES.c.prior_patient_id.in_(prior_ids), MERGES.c.patient_id.in_(survivor_ids)))
        with self.db.read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def issuer_qualifiers(self, issuer: str) -> list[dict[str, Any]]:
        """Issuer of Patient ID Qualifiers Sequence (0010,0024) items the orders give for the namespace
        ``issuer`` (the latest such order's): the universal id of an issuer that a merge pointer names."""
        if not issuer:
            return []
        with self.db.read() as conn:
            text = conn.execute(select(ORDERS.c.patient_attrs).where(
                ORDERS.c.issuer_of_patient_id == issuer, ORDERS.c.patient_attrs.like('%"00100024"%'))
                .order_by(ORDERS.c.updated_at.desc(), ORDERS.c.pk.desc()).limit(1)).scalar()
        items = (json.loads(text).get("00100024") or {}).get("Value") if text else None
        return [i for i in items or [] if isinstance(i, dict)]

    def archive_study_ids(self, patient_pk: int) -> list[tuple[str, str]]:
        """(public id, Study UID) of the stored studies of an archive patient."""
        with self.db.read() as conn:
            return [(str(r[0]), str(r[1])) for r in conn.execute(
                select(ST.c.public_id, ST.c.study_uid).where(ST.c.patient_pk == patient_pk))]


def _birth_bound(op: str, at: Any) -> ColumnElement[bool]:  # noqa: ANN401
    return date_bound(P.c.birth_date, literal(None), op, at)


def _mentions(col: Any, values: Sequence[str]) -> ColumnElement[bool]:  # noqa: ANN401
    """A DICOM JSON text column holding one of ``values`` as a JSON string (a candidate only)."""
    forms = {f for v in values for f in (json.dumps(v), json.dumps(v, ensure_ascii=False))}
    return any_of([_like(col, "%", f, "%") for f in sorted(forms)])


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
