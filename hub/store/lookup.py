"""Read-only look-ups the SCU side needs: which blob holds a stored instance, and how it is encoded.

An instance is named by its Orthanc public id (``/instances/{id}``) or by its SOP Instance UID;
both are unique columns of ``instances``. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select

from hub.store.db import Database
from hub.store.models import I


@dataclass(frozen=True)
class StoredFile:
    """Where one archived instance lies and what it is (enough to propose a presentation context)."""

    public_id: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str


class LookupRepository:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._columns = (I.c.public_id, I.c.sop_instance_uid, I.c.sop_class_uid, I.c.transfer_syntax_uid, I.c.blob_key)

    def instance_file(self, ref: str) -> StoredFile | None:
        """The instance whose public id or SOP Instance UID is ``ref``; None when unknown."""
        ref = ref.strip()
        if not ref:
            return None
        with self.db.read() as conn:
            row = conn.execute(
                select(*self._columns).where(or_(I.c.public_id == ref, I.c.sop_instance_uid == ref)).limit(1)
            ).first()
        return StoredFile(*row) if row else None

    def instance_files(self, refs: Iterable[str]) -> dict[str, StoredFile]:
        """``ref -> StoredFile`` for each known ref (public ids and SOP Instance UIDs mixed), one query
        per 500 refs; unknown refs are left out."""
        wanted = list(dict.fromkeys(r.strip() for r in refs if r and r.strip()))
        out: dict[str, StoredFile] = {}
        with self.db.read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = conn.execute(
                    select(*self._columns).where(or_(I.c.public_id.in_(chunk), I.c.sop_instance_uid.in_(chunk)))
                ).all()
                for row in rows:
                    found = StoredFile(*row)
                    for key in (found.public_id, found.sop_instance_uid):
                        if key in chunk:
                            out[key] = found
        return out
