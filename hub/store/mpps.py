"""Performed procedure steps (MPPS, PS3.4 Annex F) and their links to scheduled steps.

The functions of :class:`MppsUnit` run inside the caller's transaction (``Database.write``): an
N-CREATE or N-SET changes the MPPS row, the linked scheduled steps and their orders at once.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from hub.domain.orders import DicomJson, StepStatus
from hub.store.db import Database
from hub.store.order_models import MPPS, MPPS_LINKS, ORDERS, STEPS
from hub.store.orders import dumps, utcnow

ACTIVE_STEP_STATES = (StepStatus.SCHEDULED.value, StepStatus.ARRIVED.value, StepStatus.READY.value,
                      StepStatus.STARTED.value)


class MppsUnit:
    """The reads and writes of one MPPS transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.now = utcnow()

    # ------------------------------------------------------------------ performed steps
    def get(self, sop_instance_uid: str, *, for_update: bool = False) -> dict[str, Any] | None:
        stmt = select(MPPS).where(MPPS.c.sop_instance_uid == sop_instance_uid)
        if for_update:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return dict(row._mapping) if row else None

    def insert(self, sop_instance_uid: str, status: str, attrs: DicomJson, *, study_uid: str, patient_id: str,
               modality: str, station_aet: str, calling_aet: str) -> int:
        return int(self.conn.execute(insert(MPPS).values(
            sop_instance_uid=sop_instance_uid[:64], status=status, study_uid=study_uid[:64],
            patient_id=patient_id[:64], modality=modality[:16], station_aet=station_aet[:16],
            calling_aet=calling_aet[:16], scheduled=0, attrs=dumps(attrs), created_at=self.now,
            updated_at=self.now).returning(MPPS.c.pk)).scalar_one())

    def update(self, pk: int, **values: Any) -> None:
        if "attrs" in values:
            values["attrs"] = dumps(values["attrs"])
        self.conn.execute(update(MPPS).where(MPPS.c.pk == pk).values(updated_at=self.now, **values))

    # ------------------------------------------------------------------ links
    def step_by_sps(self, study_uid: str, sps_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(STEPS.c.pk, STEPS.c.order_pk, STEPS.c.status).where(
            STEPS.c.study_uid == study_uid, STEPS.c.sps_id == sps_id)).first()
        return dict(row._mapping) if row else None

    def steps_by_accession(self, accession: str, study_uid: str) -> list[dict[str, Any]]:
        """Steps of the order with this Accession Number and Study UID: the active ones, else all."""
        rows = self.conn.execute(
            select(STEPS.c.pk, STEPS.c.order_pk, STEPS.c.status)
            .select_from(STEPS.join(ORDERS, ORDERS.c.pk == STEPS.c.order_pk))
            .where(ORDERS.c.accession_number == accession, ORDERS.c.study_uid == study_uid)
            .order_by(STEPS.c.pk)).all()
        found = [dict(r._mapping) for r in rows]
        active = [s for s in found if s["status"] in ACTIVE_STEP_STATES]
        return active or found

    def link(self, performed_pk: int, step_pk: int) -> bool:
        """Link once; returns whether a new link was made."""
        exists = self.conn.execute(select(MPPS_LINKS.c.pk).where(
            MPPS_LINKS.c.performed_pk == performed_pk, MPPS_LINKS.c.step_pk == step_pk)).first()
        if exists:
            return False
        self.conn.execute(insert(MPPS_LINKS).values(performed_pk=performed_pk, step_pk=step_pk))
        return True

    def linked_steps(self, performed_pk: int) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(STEPS.c.pk, STEPS.c.order_pk, STEPS.c.status)
            .select_from(STEPS.join(MPPS_LINKS, MPPS_LINKS.c.step_pk == STEPS.c.pk))
            .where(MPPS_LINKS.c.performed_pk == performed_pk).order_by(STEPS.c.pk)).all()
        return [dict(r._mapping) for r in rows]

    # ------------------------------------------------------------------ steps and orders
    def set_step_status(self, step_pk: int, status: StepStatus) -> None:
        attrs = self.conn.execute(select(STEPS.c.attrs).where(STEPS.c.pk == step_pk)).scalar_one()
        item = json.loads(attrs)
        item["00400020"] = {"vr": "CS", "Value": [status.value]}
        order_pk = self.conn.execute(update(STEPS).where(STEPS.c.pk == step_pk).values(
            status=status.value, attrs=dumps(item), updated_at=self.now).returning(STEPS.c.order_pk)).scalar_one()
        # The order's FHIR versionId/ETag follow every change of one of its steps.
        self.conn.execute(update(ORDERS).where(ORDERS.c.pk == order_pk).values(
            version=ORDERS.c.version + 1, updated_at=self.now))

    def order_status(self, order_pk: int) -> str:
        return str(self.conn.execute(select(ORDERS.c.status).where(ORDERS.c.pk == order_pk)
                                     .with_for_update()).scalar_one())

    def set_order_status(self, order_pk: int, status: str) -> None:
        self.conn.execute(update(ORDERS).where(and_(ORDERS.c.pk == order_pk)).values(
            status=status[:16], version=ORDERS.c.version + 1, updated_at=self.now))


class MppsRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, sop_instance_uid: str) -> dict[str, Any] | None:
        """The stored MPPS (attrs parsed) with the pks of its linked steps."""
        with self.db.read() as conn:
            unit = MppsUnit(conn)
            row = unit.get(sop_instance_uid)
            if row is None:
                return None
            row["attrs"] = json.loads(row["attrs"])
            row["steps"] = [s["pk"] for s in unit.linked_steps(row["pk"])]
            return row
