"""The transactional outbox (table ``outbox``): messages are written in the transaction of the change
they report, then claimed one at a time with a lease and marked sent once the receiver acknowledged.

The claim is a conditional UPDATE (``claimed_until`` empty or expired), atomic on SQLite and
PostgreSQL alike, so several senders (threads or nodes) never send the same message at once.
Messages to one destination go out in creation order: a message is claimable only when no older
message of that destination is still pending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from hub.store.db import Database
from hub.store.order_models import ORDERS, OUTBOX, STEPS
from hub.store.orders import utcnow


@dataclass(frozen=True)
class OutboxItem:
    pk: int
    destination: str
    message_type: str
    control_id: str
    payload: bytes
    attempts: int


def enqueue(conn: Connection, destination: str, message_type: str, control_id: str, payload: bytes,
            order_pk: int | None = None) -> int:
    """Add a message inside the caller's transaction."""
    now = utcnow()
    return int(conn.execute(insert(OUTBOX).values(
        destination=destination[:64], message_type=message_type[:32], control_id=control_id[:64], order_pk=order_pk,
        payload=payload, state="pending", attempts=0, next_attempt_at=now, claimed_until=None, last_error="",
        created_at=now, sent_at=None).returning(OUTBOX.c.pk)).scalar_one())


class OutboxRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, destination: str, lease: float) -> OutboxItem | None:
        """The oldest pending message of ``destination`` when it is due and not held by another
        sender; it is leased for ``lease`` seconds."""
        now = utcnow()
        with self.db.write() as conn:
            row = conn.execute(
                select(OUTBOX.c.pk, OUTBOX.c.next_attempt_at, OUTBOX.c.claimed_until)
                .where(OUTBOX.c.destination == destination, OUTBOX.c.state == "pending")
                .order_by(OUTBOX.c.pk).limit(1)
            ).first()
            if row is None or row.next_attempt_at > now or (row.claimed_until is not None and row.claimed_until > now):
                return None
            taken = conn.execute(
                update(OUTBOX).where(and_(OUTBOX.c.pk == row.pk, OUTBOX.c.state == "pending",
                                          or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until <= now)))
                .values(claimed_until=now + timedelta(seconds=lease), attempts=OUTBOX.c.attempts + 1)
            ).rowcount
            if not taken:
                return None
            r = conn.execute(select(OUTBOX).where(OUTBOX.c.pk == row.pk)).one()._mapping
            return OutboxItem(int(r["pk"]), r["destination"], r["message_type"], r["control_id"], bytes(r["payload"]),
                              int(r["attempts"]))

    def sent(self, pk: int) -> None:
        with self.db.write() as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.pk == pk).values(
                state="sent", sent_at=utcnow(), claimed_until=None, last_error=""))

    def retry(self, pk: int, error: str, delay: float) -> None:
        with self.db.write() as conn:
            conn.execute(update(OUTBOX).where(OUTBOX.c.pk == pk).values(
                next_attempt_at=utcnow() + timedelta(seconds=delay), claimed_until=None, last_error=error[:256]))

    def next_due(self, destination: str) -> datetime | None:
        with self.db.read() as conn:
            return conn.execute(select(func.min(OUTBOX.c.next_attempt_at)).where(
                OUTBOX.c.destination == destination, OUTBOX.c.state == "pending")).scalar()

    def items(self, state: str | None = None) -> list[dict[str, object]]:
        with self.db.read() as conn:
            q = select(OUTBOX).order_by(OUTBOX.c.pk)
            if state:
                q = q.where(OUTBOX.c.state == state)
            return [dict(r._mapping) for r in conn.execute(q)]


def order_and_steps(conn: Connection, order_pk: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """An order row and its scheduled steps (by SPS ID), read inside the caller's transaction."""
    order = conn.execute(select(ORDERS).where(ORDERS.c.pk == order_pk)).first()
    if order is None:
        return None, []
    steps = [dict(r._mapping) for r in conn.execute(
        select(STEPS).where(STEPS.c.order_pk == order_pk).order_by(STEPS.c.sps_id))]
    return dict(order._mapping), steps
