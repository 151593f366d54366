"""Retrieve (C-MOVE, C-GET; PS3.4 C.4.2, C.4.3): what to send, and each stored instance to send.

A retrieve names its instances by unique keys only (PS3.4 C.4.2.2.1, C.4.3.2.1): the key of the
Query/Retrieve level, possibly a list of UIDs (C.2.2.2.2), plus the unique keys of the levels above
when the requester gives them; those only narrow the match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hub.domain.query import QueryLevel


@dataclass(frozen=True)
class RetrieveKeys:
    level: QueryLevel
    patient_ids: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()

    def level_keys(self) -> tuple[str, ...]:
        """The values of the unique key of the retrieve level itself."""
        return {
            QueryLevel.PATIENT: self.patient_ids,
            QueryLevel.STUDY: self.study_uids,
            QueryLevel.SERIES: self.series_uids,
            QueryLevel.IMAGE: self.sop_instance_uids,
        }[self.level]


@dataclass(frozen=True)
class StoredInstance:
    """One index row to send: its identity, its encoding and where its blob is."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    blob_key: str
    file_size: int


@dataclass(frozen=True)
class RetrieveItem:
    """A stored instance with the path of its Part 10 file, to be sent exactly as stored."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path
    size: int
