"""Read side of the archive index used by the core: statistics, the change log (Orthanc
``/changes`` semantics), and blob bookkeeping for crash recovery and consistency checks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub.store.db import Database
from hub.store.models import CH, SE, ST, TRASH, I, P


class IndexReads:
    db: Database

    # ------------------------------------------------------------------ blob bookkeeping
    def known_blob_keys(self, keys: list[str]) -> set[str]:
        out: set[str] = set()
        with self.db.read() as conn:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                out.update(conn.execute(select(I.c.blob_key).where(I.c.blob_key.in_(chunk))).scalars())
        return out

    def pending_trash(self) -> list[str]:
        with self.db.read() as conn:
            return list(conn.execute(select(TRASH.c.blob_key)).scalars())

    def all_blob_keys(self) -> set[str]:
        with self.db.read() as conn:
            return set(conn.execute(select(I.c.blob_key)).scalars())

    # ------------------------------------------------------------------ reads used by the core
    def statistics(self) -> dict[str, int]:
        with self.db.read() as conn:
            return {
                "patients": conn.execute(select(func.count()).select_from(P)).scalar_one(),
                "studies": conn.execute(select(func.count()).select_from(ST)).scalar_one(),
                "series": conn.execute(select(func.count()).select_from(SE)).scalar_one(),
                "instances": conn.execute(select(func.count()).select_from(I)).scalar_one(),
                "disk_size": int(conn.execute(select(func.coalesce(func.sum(I.c.file_size), 0))).scalar_one()),
            }

    def instance_by_sop_uid(self, sop_uid: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(select(I).where(I.c.sop_instance_uid == sop_uid)).mappings().first()
            return dict(row) if row else None

    def changes(self, since: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], bool, int]:
        """Orthanc ``/changes``: events with ``seq > since``; returns (changes, done, last)."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(CH).where(CH.c.seq > since).order_by(CH.c.seq).limit(limit + 1)
            ).mappings().all()
            done = len(rows) <= limit
            rows = rows[:limit]
            last = rows[-1]["seq"] if rows else self.last_change()
            return [dict(r) for r in rows], done, last

    def last_change(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(CH.c.seq), 0))).scalar_one())
