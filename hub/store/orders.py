"""Orders, scheduled steps, patient updates/merges, reports and answered HL7 messages.

One :meth:`OrderRepository.unit` is one database transaction: the HL7 inbound service applies a whole
message and records its ACK in it, so the ACK is sent only once everything is committed and a resent
MSH-10 finds the stored answer (mapping-reference 1.3-1.5; dcm4chee-arc ProcedureUpdateService).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, exists, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from hub.domain.orders import (
    FINAL_STEP_STATES,
    DicomJson,
    OrderAction,
    OrderCommand,
    PatientIdentity,
    PatientRecord,
    PatientUpdate,
    ReportCommand,
    ScheduledStep,
    StepStatus,
)
from hub.errors import HubError
from hub.store.db import Database, dumps
from hub.store.models import ST, P
from hub.store.order_models import HL7_MESSAGES, MERGES, ORDERS, REPORTS, STEPS
from mappings.dicom_to_fhir_values import dicom_utc, offset_of
from mappings.dicom_to_index import normalize_name


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def merge_attrs(old: DicomJson, new: DicomJson, cleared: tuple[str, ...] = ()) -> DicomJson:
    """HL7 update semantics (v2.5 2.5.3): an empty field keeps the stored value, ``""`` clears it.
    A new attribute without a value therefore never erases a stored one unless it was cleared."""
    out = dict(old)
    for tag, elem in new.items():
        if "Value" in elem or tag not in out or tag in cleared:
            out[tag] = elem
    for tag in cleared:
        if tag in out:
            out[tag] = {"vr": out[tag].get("vr", "UN")}
    return out


def _pn(attrs: DicomJson, tag: str = "00100010") -> str:
    value = attrs.get(tag, {}).get("Value") or [{}]
    first = value[0]
    return first.get("Alphabetic", "") if isinstance(first, dict) else str(first)


def _first(attrs: DicomJson, tag: str) -> str:
    value = attrs.get(tag, {}).get("Value") or [""]
    return str(value[0])


_INSERT_STEPS = insert(STEPS)
_NEW_ORDER: dict[tuple[str, tuple[str, ...], tuple[Any, ...], tuple[str, ...]], Any] = {}


def _new_order_statement(dialect: str, names: tuple[str, ...], returning: tuple[Any, ...],
                         step: tuple[str, ...] = ()) -> Any:  # noqa: ANN401 - an INSERT or a SELECT
    """INSERT INTO orders (names) SELECT :names WHERE NOT EXISTS (a merge of :merged_pid/:merged_issuer)
    ON CONFLICT (study_uid) DO NOTHING RETURNING pk, version, *returning; with ``step`` (PostgreSQL) also its
    one step, from ``:step_<column>``, in the same statement (a data-modifying CTE). Built once per shape,
    executed with the row's values: no statement construction per order."""
    key = (dialect, names, returning, step)
    stmt = _NEW_ORDER.get(key)
    if stmt is None:
        merged = exists(select(MERGES.c.pk).where(MERGES.c.prior_patient_id == bindparam("merged_pid"),
                                                  MERGES.c.prior_issuer == bindparam("merged_issuer")))
        source = select(*(bindparam(n, type_=ORDERS.c[n].type) for n in names)).where(~merged)
        dialect_insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = dialect_insert(ORDERS).from_select(list(names), source) \
            .on_conflict_do_nothing(index_elements=["study_uid"]).returning(ORDERS.c.pk, ORDERS.c.version, *returning)
        if step:
            new = stmt.cte("new_order")
            values = select(new.c.pk, *(bindparam(f"step_{n}", type_=STEPS.c[n].type) for n in step))
            steps = insert(STEPS).from_select(["order_pk", *step], values).cte("new_step")
            stmt = select(new.c.pk, new.c.version, *(new.c[r.name] for r in returning)).add_cte(steps)
        _NEW_ORDER[key] = stmt
    return stmt


def merged_patient_error() -> HubError:
    """AE 204 for an order naming a Patient ID that ADT^A40 merged away."""
    return HubError("unknown_resource", "the patient ID was merged into another (ADT^A40)", attribute="PID^1^3")


class AlreadyAnswered(Exception):
    """The message (sender, MSH-10) was answered before: its stored answer is the answer."""


class OrderUnit:
    """The writes of one transaction on the order tables."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.now = utcnow()
        self.created = False  # whether the last apply_order created its order (False: it existed)
        # The rows the last apply_order inserted when it created the order: (order, its steps), as written
        # (the order with its pk, version and the ``returning`` extras), so nobody needs to read them back.
        self.inserted: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        # Labelled SQL expressions that the INSERT of a new order also returns; they may use the new row's
        # values as bind parameters named after its columns (e.g. ``bindparam("patient_id")``). Keep the
        # same tuple for every unit: the statement is built once per tuple (and dialect).
        self.returning: tuple[Any, ...] = ()

    # ------------------------------------------------------------------ HL7 message log
    def answered(self, sender: str, control_id: str) -> bytes | None:
        """The ACK already sent for this sender's MSH-10, if any."""
        row = self.conn.execute(
            select(HL7_MESSAGES.c.ack).where(HL7_MESSAGES.c.sender == sender[:200],
                                              HL7_MESSAGES.c.control_id == control_id[:64])
        ).first()
        return bytes(row[0]) if row else None

    def remember(self, sender: str, control_id: str, message_type: str, ack_code: str, ack: bytes) -> None:
        """Record the answer; :class:`AlreadyAnswered` when this sender's MSH-10 has one (the caller's
        transaction must then be rolled back: the message was a resend)."""
        try:
            self.conn.execute(insert(HL7_MESSAGES).values(
                sender=sender[:200], control_id=control_id[:64], message_type=message_type[:32], ack_code=ack_code,
                ack=ack, received_at=self.now))
        except IntegrityError:
            raise AlreadyAnswered() from None

    # ------------------------------------------------------------------ orders
    @staticmethod
    def _merged(identity: PatientIdentity) -> Any:  # noqa: ANN401 - an EXISTS clause
        return exists(select(MERGES.c.pk).where(MERGES.c.prior_patient_id == identity.patient_id,
                                                MERGES.c.prior_issuer == identity.issuer))

    def _merged_into(self, identity: PatientIdentity) -> bool:
        return bool(self.conn.execute(select(self._merged(identity))).scalar())

    def apply_order(self, cmd: OrderCommand, sender: str) -> int:
        """Apply one requested procedure; returns the order's pk (``created`` says whether it is new).
        Raises :class:`HubError` (AE) for an unknown order to cancel or update, a patient mismatch or a
        merged (retired) patient ID."""
        self.created = False
        self.inserted = None
        upsert = cmd.action in (OrderAction.CREATE, OrderAction.UPDATE)
        if upsert:  # the common case first: a new order, inserted without looking it up
            self.inserted = self._insert_new(cmd, sender)
            if self.inserted is not None:
                self.created = True
                return int(self.inserted[0]["pk"])
        row = self.conn.execute(select(ORDERS).where(ORDERS.c.study_uid == cmd.study_uid).with_for_update()).first()
        if row is None:  # an insert that did not happen without an existing order: the patient was merged
            if upsert:
                raise merged_patient_error()
            raise HubError("unknown_resource", "no order with this Study Instance UID", attribute="ORC^1^1")
        if self._merged_into(cmd.patient.identity):
            raise merged_patient_error()
        o = row._mapping
        if (o["patient_id"], o["issuer_of_patient_id"]) != (cmd.patient.identity.patient_id,
                                                            cmd.patient.identity.issuer):
            # the same patient under another form of its issuer (e.g. only the universal id) takes the stored one
            if not cmd.patient.identity.names(o["patient_id"], o["issuer_of_patient_id"],
                                              json.loads(o["patient_attrs"])):
                raise HubError("duplicate_instance", "the study of this order belongs to another patient",
                               attribute="PID^1^3")
            cmd = replace(cmd, patient=cmd.patient.with_issuer(o["issuer_of_patient_id"]))
        if upsert:
            return self._update_existing(cmd, sender, o)
        order_pk = int(o["pk"])
        target = {OrderAction.CANCEL: StepStatus.CANCELED, OrderAction.DISCONTINUE: StepStatus.DISCONTINUED}.get(
            cmd.action)
        named = [s.sps_id for s in cmd.steps if s.sps_id]
        cond = [STEPS.c.order_pk == order_pk]
        if cmd.action is OrderAction.STATUS:
            status = cmd.steps[0].status if cmd.steps else StepStatus.COMPLETED
            if named:
                cond.append(STEPS.c.sps_id.in_(named))
            self._set_step_status(cond, status)
        else:
            assert target is not None
            # A cancel/discontinue flags the steps (kept for audit and for a late MPPS); final ones stay.
            cond.append(STEPS.c.status.not_in([s.value for s in FINAL_STEP_STATES]))
            self._set_step_status(cond, target)
        self.conn.execute(update(ORDERS).where(ORDERS.c.pk == order_pk).values(
            status=cmd.order_status[:16] or o["status"], control=cmd.control[:4], sender=sender[:200],
            reason=cmd.reason[:256] or o["reason"], updated_at=self.now, version=ORDERS.c.version + 1))
        return order_pk

    def _set_step_status(self, cond: list[Any], status: StepStatus) -> None:
        rows = self.conn.execute(select(STEPS.c.pk, STEPS.c.attrs).where(and_(*cond))).all()
        for pk, attrs in rows:
            item = json.loads(attrs)
            item["00400020"] = {"vr": "CS", "Value": [status.value]}
            self.conn.execute(update(STEPS).where(STEPS.c.pk == pk).values(
                status=status.value, attrs=dumps(item), updated_at=self.now))

    def _values(self, cmd: OrderCommand, sender: str, patient_attrs: DicomJson, attrs: DicomJson) -> dict[str, Any]:
        pid = cmd.patient.identity
        return dict(
            accession_number=cmd.accession_number[:64], requested_procedure_id=cmd.requested_procedure_id[:64],
            placer_order=cmd.placer_order[:64], filler_order=cmd.filler_order[:64], patient_id=pid.patient_id[:64],
            issuer_of_patient_id=pid.issuer[:64], patient_name_norm=(normalize_name(_pn(patient_attrs)) or "")[:324],
            status=(cmd.order_status or "SC")[:16], control=cmd.control[:4],
            specific_character_set=cmd.specific_character_set[:64], patient_attrs=dumps(patient_attrs),
            attrs=dumps(attrs), sender=sender[:200], reason=cmd.reason[:256], updated_at=self.now)

    def _insert_new(self, cmd: OrderCommand, sender: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The new order and its steps, inserted unless the study has an order (or the patient ID was merged
        away): ``_new_order_statement``, the steps in it on PostgreSQL (one step) or in one more statement.
        Returns the rows as written (order with pk, version and ``returning``), or None."""
        row = {"study_uid": cmd.study_uid, "created_at": self.now, "authored_at": cmd.authored_at or self.now,
               **self._values(cmd, sender, cmd.patient.attrs, cmd.attrs)}
        steps = [self._step_row(cmd.study_uid, step, offset_of(cmd.attrs)) for step in cmd.steps]
        together = self.conn.dialect.name == "postgresql" and len(steps) == 1
        params = {**row, "merged_pid": cmd.patient.identity.patient_id, "merged_issuer": cmd.patient.identity.issuer}
        if together:
            params.update({f"step_{k}": v for k, v in steps[0].items()})
        stmt = _new_order_statement(self.conn.dialect.name, tuple(row), self.returning,
                                    tuple(steps[0]) if together else ())
        inserted = self.conn.execute(stmt, params).first()
        if inserted is None:
            return None
        order = {**row, **inserted._mapping}
        steps = [{"order_pk": order["pk"], **step} for step in steps]
        if steps and not together:
            self.conn.execute(_INSERT_STEPS, steps)
        return order, steps

    def _step_row(self, study_uid: str, step: ScheduledStep, offset: str) -> dict[str, Any]:
        return dict(study_uid=study_uid, sps_id=step.sps_id[:64], status=step.status.value,
                    modality=step.modality[:16], station_aet=step.station_aet[:16], start_date=step.start_date[:8],
                    start_time=step.start_time[:16], started_at=dicom_utc(step.start_date, step.start_time, offset),
                    created_at=self.now, updated_at=self.now,
                    attrs=dumps({**step.attrs, "00400020": {"vr": "CS", "Value": [step.status.value]}}))

    def _update_existing(self, cmd: OrderCommand, sender: str, old: Any) -> int:  # noqa: ANN401 - a row mapping
        """A new or changed order for a study that has one: attributes merged (empty = keep), steps replaced."""
        patient_attrs = merge_attrs(json.loads(old["patient_attrs"]), cmd.patient.attrs, cmd.patient.cleared)
        attrs = merge_attrs(json.loads(old["attrs"]), cmd.attrs)
        order_pk = int(old["pk"])
        authored = {"authored_at": cmd.authored_at} if cmd.authored_at is not None else {}
        self.conn.execute(update(ORDERS).where(ORDERS.c.pk == order_pk).values(
            **self._values(cmd, sender, patient_attrs, attrs), **authored, version=ORDERS.c.version + 1))
        self._replace_steps(order_pk, cmd.study_uid, cmd.steps, offset_of(attrs))
        return order_pk

    def _replace_steps(self, order_pk: int, study_uid: str, steps: list[ScheduledStep], offset: str) -> None:
        """The message's steps are the study's steps (dcm4chee full replacement): steps it no longer
        names are removed unless already started or performed; named ones are updated or created."""
        existing = {r.sps_id: r for r in self.conn.execute(
            select(STEPS.c.pk, STEPS.c.sps_id, STEPS.c.status, STEPS.c.attrs).where(STEPS.c.order_pk == order_pk))}
        keep = {s.sps_id for s in steps}
        gone = [r.pk for sid, r in existing.items() if sid not in keep and r.status == StepStatus.SCHEDULED.value]
        if gone:
            self.conn.execute(delete(STEPS).where(STEPS.c.pk.in_(gone)))
        for step in steps:
            prior = existing.get(step.sps_id)
            item = step.attrs if prior is None else merge_attrs(json.loads(prior.attrs), step.attrs)
            status = step.status
            if prior is not None and prior.status != StepStatus.SCHEDULED.value and status is StepStatus.SCHEDULED:
                status = StepStatus(prior.status)  # a reschedule does not undo what a modality reported
            item["00400020"] = {"vr": "CS", "Value": [status.value]}
            values = dict(status=status.value, modality=step.modality[:16], station_aet=step.station_aet[:16],
                          start_date=step.start_date[:8], start_time=step.start_time[:16], attrs=dumps(item),
                          started_at=dicom_utc(step.start_date, step.start_time, offset), updated_at=self.now)
            if prior is None:
                self.conn.execute(insert(STEPS).values(order_pk=order_pk, study_uid=study_uid, sps_id=step.sps_id[:64],
                                                       created_at=self.now, **values))
            else:
                self.conn.execute(update(STEPS).where(STEPS.c.pk == prior.pk).values(**values))

    # ------------------------------------------------------------------ patients
    def update_patient(self, upd: PatientUpdate) -> tuple[int, int]:
        """ADT^A08/A31 (and the patient part of A40): the new demographics on every order of the
        patient and on the archive's patient; returns (orders, archive patients) touched."""
        ident = upd.patient.identity
        orders = self._update_orders_patient(ident, ident, upd.patient)
        archived = self._update_archive_patient(ident.patient_id, ident.patient_id, upd.patient)
        return orders, archived

    def merge_patient(self, upd: PatientUpdate) -> tuple[int, int]:
        """ADT^A40: orders and stored studies of ``prior`` move to the surviving patient; the prior
        identity is kept as a pointer so later messages naming it are refused."""
        assert upd.prior is not None
        ident, prior = upd.patient.identity, upd.prior
        if (prior.patient_id, prior.issuer) == (ident.patient_id, ident.issuer):
            raise HubError("duplicate_instance", "MRG-1 names the surviving patient itself", attribute="MRG^1^1")
        orders = self._update_orders_patient(prior, ident, upd.patient)
        orders += self._update_orders_patient(ident, ident, upd.patient)
        archived = self._move_archive_studies(prior.patient_id, ident.patient_id, upd.patient)
        self.conn.execute(insert(MERGES).values(prior_patient_id=prior.patient_id[:64], prior_issuer=prior.issuer[:64],
                                                patient_id=ident.patient_id[:64], issuer=ident.issuer[:64],
                                                merged_at=self.now))
        return orders, archived

    def _update_orders_patient(self, old: PatientIdentity, new: PatientIdentity, rec: PatientRecord) -> int:
        rows = self.conn.execute(select(ORDERS.c.pk, ORDERS.c.patient_attrs).where(
            ORDERS.c.patient_id == old.patient_id, ORDERS.c.issuer_of_patient_id == old.issuer)).all()
        for pk, attrs in rows:
            merged = merge_attrs(json.loads(attrs), rec.attrs, rec.cleared)
            self.conn.execute(update(ORDERS).where(ORDERS.c.pk == pk).values(
                patient_id=new.patient_id[:64], issuer_of_patient_id=new.issuer[:64], patient_attrs=dumps(merged),
                patient_name_norm=(normalize_name(_pn(merged)) or "")[:324], updated_at=self.now,
                version=ORDERS.c.version + 1))
        return len(rows)

    def _archive_values(self, rec: PatientRecord, main_tags: str) -> dict[str, Any]:
        tags = json.loads(main_tags or "{}")
        values: dict[str, Any] = {"updated_at": self.now}
        for keyword, tag, column in (("PatientName", "00100010", "patient_name"),
                                     ("PatientBirthDate", "00100030", "birth_date"),
                                     ("PatientSex", "00100040", "sex")):
            if tag not in rec.attrs or ("Value" not in rec.attrs[tag] and tag not in rec.cleared):
                continue
            text = _pn(rec.attrs, tag) if tag == "00100010" else _first(rec.attrs, tag)
            tags[keyword] = text
            values[column] = text or (None if column != "patient_name" else "")
            if column == "patient_name":
                values["patient_name_norm"] = normalize_name(text)
        values["main_tags"] = dumps(tags)
        return values

    def _update_archive_patient(self, old_id: str, new_id: str, rec: PatientRecord) -> int:
        rows = self.conn.execute(select(P.c.pk, P.c.main_tags).where(P.c.patient_id == old_id)).all()
        for pk, main_tags in rows:
            values = self._archive_values(rec, main_tags)
            self.conn.execute(update(P).where(P.c.pk == pk).values(**values))
        return len(rows)

    def _move_archive_studies(self, old_id: str, new_id: str, rec: PatientRecord) -> int:
        """Stored studies of the prior patient are re-attached to the surviving one (same Orthanc
        ids as at ingest); without a surviving archive patient the prior one is renamed."""
        prior = self.conn.execute(select(P.c.pk, P.c.main_tags, P.c.num_studies, P.c.num_series, P.c.num_instances)
                                  .where(P.c.patient_id == old_id)).all()
        target = self.conn.execute(select(P.c.pk).where(P.c.patient_id == new_id)).first()
        for row in prior:
            if target is None:
                values = self._archive_values(rec, row.main_tags)
                tags = json.loads(values["main_tags"])
                tags["PatientID"] = new_id
                values.update(patient_id=new_id, main_tags=dumps(tags))
                self.conn.execute(update(P).where(P.c.pk == row.pk).values(**values))
                target = (row.pk,)
                continue
            self.conn.execute(update(ST).where(ST.c.patient_pk == row.pk).values(patient_pk=target[0]))
            self.conn.execute(update(P).where(P.c.pk == target[0]).values(
                num_studies=P.c.num_studies + row.num_studies, num_series=P.c.num_series + row.num_series,
                num_instances=P.c.num_instances + row.num_instances, updated_at=self.now))
            self.conn.execute(delete(P).where(P.c.pk == row.pk))
        if target is not None:
            self._update_archive_patient(new_id, new_id, rec)
        return len(prior)

    # ------------------------------------------------------------------ reports
    def add_report(self, rep: ReportCommand) -> None:
        self.conn.execute(insert(REPORTS).values(
            study_uid=rep.study_uid[:64], accession_number=rep.accession_number[:64],
            patient_id=rep.patient.identity.patient_id[:64], result_status=rep.result_status[:4],
            observation_time=rep.observation_time[:32], text=rep.text, attrs=dumps(rep.attrs), received_at=self.now))


class OrderRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextlib.contextmanager
    def unit(self) -> Iterator[OrderUnit]:
        with self.db.write() as conn:
            yield OrderUnit(conn)

    def answered(self, sender: str, control_id: str) -> bytes | None:
        with self.db.read() as conn:
            return OrderUnit(conn).answered(sender, control_id)

    def order(self, study_uid: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(ORDERS).where(ORDERS.c.study_uid == study_uid)).first()
            return dict(row._mapping) if row else None

    def steps(self, study_uid: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(select(STEPS).where(STEPS.c.study_uid == study_uid).order_by(STEPS.c.sps_id))
            return [dict(r._mapping) for r in rows]

    def reports(self, study_uid: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(select(REPORTS).where(REPORTS.c.study_uid == study_uid).order_by(REPORTS.c.pk))
            return [dict(r._mapping) for r in rows]
