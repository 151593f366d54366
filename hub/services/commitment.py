"""Storage Commitment, Push Model (PS3.4 Annex J): decide which referenced SOP Instances the
archive commits to, answering from the index and the blob store.

An instance is committed when its index row exists under the requested SOP Class and its blob
file exists (PS3.4 J.3.3.1.2: stored at Level 2, all attributes, as received). Every referenced
instance appears in the result exactly once per reference, either committed or failed with a
Failure Reason (PS3.4 J.3.3, Table J.3-2 and C.14.1.1):

* ``0x0112`` no such object instance: unknown to the index, or its blob is missing;
* ``0x0119`` class/instance conflict: stored under another SOP Class than the requested one;
* ``0x0110`` processing failure: the index could not be read.

The adapter turns the result into an N-EVENT-REPORT (Event Type 1 when nothing failed, else 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from hub.store import BlobStore
from hub.store.commitment import CommitmentRepository

log = logging.getLogger(__name__)

PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass(frozen=True)
class SopRef:
    """One item of the Referenced SOP Sequence (0008,1199)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class FailedSop:
    """One item of the Failed SOP Sequence (0008,1198)."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int  # Failure Reason (0008,1197)


@dataclass(frozen=True)
class CommitmentResult:
    committed: list[SopRef] = field(default_factory=list)
    failed: list[FailedSop] = field(default_factory=list)

    @property
    def event_type(self) -> int:
        """N-EVENT-REPORT Event Type ID (PS3.4 J.3.3): 1 all committed, 2 failures exist."""
        return 2 if self.failed else 1


class CommitmentService:
    def __init__(self, repository: CommitmentRepository, blobs: BlobStore) -> None:
        self.repository = repository
        self.blobs = blobs

    def check(self, refs: Sequence[tuple[str, str]]) -> CommitmentResult:
        """Check ``(sop_class_uid, sop_instance_uid)`` pairs, in request order (PS3.4 J.3.3.1.2)."""
        result = CommitmentResult()
        try:
            stored = self.repository.find(refs)
        except Exception:
            log.exception("storage commitment: the index could not be read; %d instances not committed", len(refs))
            result.failed.extend(FailedSop(c, i, PROCESSING_FAILURE) for c, i in refs)
            return result
        blob_ok: dict[str, bool] = {}
        for sop_class, sop_instance in refs:
            row = stored.get(sop_instance)
            if row is None:
                result.failed.append(FailedSop(sop_class, sop_instance, NO_SUCH_OBJECT_INSTANCE))
            elif row.sop_class_uid != sop_class:
                result.failed.append(FailedSop(sop_class, sop_instance, CLASS_INSTANCE_CONFLICT))
            else:
                ok = blob_ok.get(row.blob_key)
                if ok is None:
                    ok = blob_ok[row.blob_key] = self.blobs.exists(row.blob_key)
                    if not ok:
                        log.warning("storage commitment: indexed blob %s is missing from the blob store", row.blob_key)
                if ok:
                    result.committed.append(SopRef(sop_class, sop_instance))
                else:
                    result.failed.append(FailedSop(sop_class, sop_instance, NO_SUCH_OBJECT_INSTANCE))
        return result
