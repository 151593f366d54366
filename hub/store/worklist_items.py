"""The Modality Worklist as the Orthanc-compatible REST API sees it (``/worklists``): one item per scheduled
procedure step (PS3.4 K.6.1.2, the MWL information model), listed and deleted by the step's key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from hub.store.db import Database
from hub.store.order_models import ORDERS, STEPS


class WorklistItems:
    """The worklist as REST sees it (``/worklists``): one entry per scheduled step."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, limit: int = 1000, since: int = 0) -> list[dict[str, Any]]:
        """Steps with their order, by id (the step's primary key, stable while the item lives)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(STEPS.c.pk, STEPS.c.status, STEPS.c.attrs, ORDERS.c.attrs.label("order_attrs"),
                       ORDERS.c.patient_attrs, ORDERS.c.specific_character_set)
                .join(ORDERS, ORDERS.c.pk == STEPS.c.order_pk)
                .where(STEPS.c.pk > since).order_by(STEPS.c.pk).limit(limit))
            return [dict(r._mapping) for r in rows]

    def delete(self, pk: int) -> bool:
        """Remove one item; an order left without steps goes with it."""
        with self.db.write() as conn:
            row = conn.execute(select(STEPS.c.order_pk).where(STEPS.c.pk == pk)).first()
            if row is None:
                return False
            conn.execute(delete(STEPS).where(STEPS.c.pk == pk))
            if conn.execute(select(STEPS.c.pk).where(STEPS.c.order_pk == row.order_pk).limit(1)).first() is None:
                conn.execute(delete(ORDERS).where(ORDERS.c.pk == row.order_pk))
            return True
