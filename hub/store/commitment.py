"""Index look-ups for Storage Commitment (PS3.4 Annex J): which referenced SOP Instances the
archive holds, under which SOP Class, and in which blob.

A commitment request may reference thousands of instances, so they are looked up with batched
``sop_instance_uid IN (...)`` queries on the unique index of the instances table, never one query
per instance and never more bind parameters per statement than SQLite or PostgreSQL accept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from hub.store.db import Database
from hub.store.models import I

BATCH = 500  # bind parameters per IN list; far below SQLite's 32766 and PostgreSQL's 65535


@dataclass(frozen=True)
class StoredInstance:
    """What the index says about one stored SOP Instance."""

    sop_instance_uid: str
    sop_class_uid: str
    blob_key: str


class CommitmentRepository:
    def __init__(self, db: Database, *, batch: int = BATCH) -> None:
        self.db = db
        self.batch = batch

    def find(self, refs: Iterable[tuple[str, str]]) -> dict[str, StoredInstance]:
        """Look up ``(sop_class_uid, sop_instance_uid)`` pairs (PS3.4 J.3.2, Referenced SOP Sequence).

        Returns the stored instances among them keyed by SOP Instance UID, with the SOP Class the
        archive stored each one under (which may differ from the requested one) and its blob key.
        Instances the index does not know are absent from the result.
        """
        uids = sorted({instance_uid for _, instance_uid in refs})
        found: dict[str, StoredInstance] = {}
        if not uids:
            return found
        query = select(I.c.sop_instance_uid, I.c.sop_class_uid, I.c.blob_key)
        with self.db.read() as conn:
            for start in range(0, len(uids), self.batch):
                chunk = uids[start : start + self.batch]
                for row in conn.execute(query.where(I.c.sop_instance_uid.in_(chunk))):
                    found[row.sop_instance_uid] = StoredInstance(row.sop_instance_uid, row.sop_class_uid, row.blob_key)
        return found
