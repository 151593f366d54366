"""Users of the HTTP API (HTTP Basic): username, password hash, roles."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update

from hub.store.db import Database
from hub.store.index import utcnow
from hub.store.models import USERS


@dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str
    roles: tuple[str, ...]


class UserRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, username: str) -> UserRow | None:
        with self.db.read() as conn:
            row = conn.execute(select(USERS).where(USERS.c.username == username)).first()
        if row is None:
            return None
        return UserRow(row.username, row.password_hash, tuple(r for r in row.roles.split(",") if r))

    def upsert(self, username: str, password_hash: str, roles: tuple[str, ...]) -> bool:
        """Create or update a user; returns True when created."""
        with self.db.write() as conn:
            exists = conn.execute(select(USERS.c.pk).where(USERS.c.username == username)).first()
            if exists:
                conn.execute(
                    update(USERS)
                    .where(USERS.c.pk == exists.pk)
                    .values(password_hash=password_hash, roles=",".join(roles))
                )
                return False
            conn.execute(
                insert(USERS).values(
                    username=username, password_hash=password_hash, roles=",".join(roles), created_at=utcnow()
                )
            )
            return True

    def list(self) -> list[UserRow]:
        with self.db.read() as conn:
            rows = conn.execute(select(USERS).order_by(USERS.c.username)).all()
        return [UserRow(r.username, r.password_hash, tuple(x for x in r.roles.split(",") if x)) for r in rows]
