"""SQLAlchemy models of the order side (IHE Scheduled Workflow): orders (one per requested procedure,
keyed by Study Instance UID), their scheduled steps (the Modality Worklist, PS3.4 Annex K), performed
steps (MPPS, PS3.4 Annex F), the HL7 messages already answered (duplicate MSH-10 detection), the
outbound HL7 outbox, received reports and patient merges.

Attributes are kept as DICOM JSON (PS3.18 F.2) text; every attribute MWL C-FIND matches on has its
own indexed column. Created by migration 0003.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import PK, UID, Base, _pattern_index


class Order(Base):
    """One requested procedure (ORC/OBR group of ORM^O01, ORC/TQ1/OBR of OMI^O23)."""

    __tablename__ = "orders"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    accession_number: Mapped[str] = mapped_column(String(64), index=True)
    requested_procedure_id: Mapped[str] = mapped_column(String(64), index=True)
    placer_order: Mapped[str] = mapped_column(String(64), index=True)
    filler_order: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer_of_patient_id: Mapped[str] = mapped_column(String(64))
    patient_name_norm: Mapped[str] = mapped_column(String(324))
    status: Mapped[str] = mapped_column(String(16), index=True)  # HL7 table 0038: SC, IP, CM, CA, DC
    control: Mapped[str] = mapped_column(String(4))  # last ORC-1
    specific_character_set: Mapped[str] = mapped_column(String(64))
    patient_attrs: Mapped[str] = mapped_column(Text)  # DICOM JSON: patient module
    attrs: Mapped[str] = mapped_column(Text)  # DICOM JSON: request-level MWL attributes
    sender: Mapped[str] = mapped_column(String(200))  # MSH-3|MSH-4 of the last message, or "rest"/"fhir"
    reason: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime)  # receipt of the order (UTC)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # ServiceRequest.authoredOn (UTC): FHIR authoredOn, HL7 ORC-9 of the new order, else created_at (migration 0005)
    authored_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # FHIR meta.versionId / ETag: 1 on insert, +1 on every change of the order or its steps (migration 0004)
    version: Mapped[int] = mapped_column(Integer, server_default="1", default=1)

    __table_args__ = (_pattern_index("ix_orders_patient_name_norm", "patient_name_norm"),)


class ScheduledStepRow(Base):
    """One Scheduled Procedure Step = one MWL item; (study_uid, sps_id) is its identity."""

    __tablename__ = "scheduled_steps"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.pk", ondelete="CASCADE"), index=True)
    study_uid: Mapped[str] = mapped_column(UID)
    sps_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    modality: Mapped[str] = mapped_column(String(16), index=True)
    station_aet: Mapped[str] = mapped_column(String(16), index=True)
    start_date: Mapped[str] = mapped_column(String(8), index=True)
    start_time: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)  # UTC; FHIR ``started``
    attrs: Mapped[str] = mapped_column(Text)  # DICOM JSON: the (0040,0100) item
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)

    __table_args__ = (
        UniqueConstraint("study_uid", "sps_id"),
        Index("ix_scheduled_steps_station_date", "station_aet", "start_date", "start_time"),
        Index("ix_scheduled_steps_modality_date", "modality", "start_date", "start_time"),
        Index("ix_scheduled_steps_status_date", "status", "start_date"),
    )


class PerformedStep(Base):
    """A Modality Performed Procedure Step SOP Instance (PS3.4 F.7)."""

    __tablename__ = "performed_steps"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # IN PROGRESS, COMPLETED, DISCONTINUED
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    modality: Mapped[str] = mapped_column(String(16))
    station_aet: Mapped[str] = mapped_column(String(16))
    calling_aet: Mapped[str] = mapped_column(String(16))
    scheduled: Mapped[int] = mapped_column(Integer)  # 1: linked to scheduled steps; 0: unscheduled
    attrs: Mapped[str] = mapped_column(Text)  # DICOM JSON of the MPPS instance as it stands
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class PerformedStepLink(Base):
    """Which scheduled steps an MPPS performs (its Scheduled Step Attributes Sequence items)."""

    __tablename__ = "performed_step_links"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    performed_pk: Mapped[int] = mapped_column(ForeignKey("performed_steps.pk", ondelete="CASCADE"), index=True)
    step_pk: Mapped[int] = mapped_column(ForeignKey("scheduled_steps.pk", ondelete="CASCADE"), index=True)


class Hl7Message(Base):
    """An inbound HL7 message already answered: a resend with the same sender and MSH-10 gets the
    stored answer again and changes nothing (HL7 v2.5.1 2.10.1, original-mode duplicate handling)."""

    __tablename__ = "hl7_messages"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    sender: Mapped[str] = mapped_column(String(200))
    control_id: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(32))
    ack_code: Mapped[str] = mapped_column(String(2))
    ack: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (UniqueConstraint("sender", "control_id"),)


class OutboxMessage(Base):
    """A message to send (HL7 status to the RIS), written in the transaction of the change it
    reports; a sender claims it with a lease (``claimed_until``) and retries until an AA."""

    __tablename__ = "outbox"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[str] = mapped_column(String(32))
    control_id: Mapped[str] = mapped_column(String(64))
    order_pk: Mapped[int | None] = mapped_column(Integer, index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)


class Report(Base):
    """A radiology report received as ORU^R01, kept against its study."""

    __tablename__ = "reports"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    accession_number: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    result_status: Mapped[str] = mapped_column(String(4))
    observation_time: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    attrs: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime)


class PatientMerge(Base):
    """ADT^A40: the prior identity now points at the surviving one (MRG-1 -> PID-3)."""

    __tablename__ = "patient_merges"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    prior_patient_id: Mapped[str] = mapped_column(String(64), index=True)
    prior_issuer: Mapped[str] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64))
    merged_at: Mapped[datetime] = mapped_column(DateTime)


ORDERS: Table = Order.__table__  # type: ignore[assignment]
STEPS: Table = ScheduledStepRow.__table__  # type: ignore[assignment]
MPPS: Table = PerformedStep.__table__  # type: ignore[assignment]
MPPS_LINKS: Table = PerformedStepLink.__table__  # type: ignore[assignment]
HL7_MESSAGES: Table = Hl7Message.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxMessage.__table__  # type: ignore[assignment]
REPORTS: Table = Report.__table__  # type: ignore[assignment]
MERGES: Table = PatientMerge.__table__  # type: ignore[assignment]
