"""Modality Worklist (IHE RAD-5, PS3.4 Annex K): the scheduled steps that match a query.

Without a ScheduledProcedureStepStatus key the worklist shows only the statuses configured in
``[hl7] worklist_statuses`` (default ``SCHEDULED``): started, completed, cancelled and
discontinued steps are not offered to modalities again. A query naming the status gets those.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.domain.query import Condition
from hub.store.db import Database
from hub.store.worklist import COLUMNS, WorklistRepository

MATCHING_KEYS = frozenset(COLUMNS)


def parse_statuses(text: str) -> list[str]:
    """``"SCHEDULED, ARRIVED"`` -> ``["SCHEDULED", "ARRIVED"]``."""
    return [s.strip().upper() for s in text.split(",") if s.strip()]


class WorklistService:
    def __init__(self, db: Database, default_statuses: str = "SCHEDULED") -> None:
        self.repo = WorklistRepository(db)
        self.default_statuses = parse_statuses(default_statuses) or ["SCHEDULED"]

    def find(self, conditions: list[Condition], *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Stream worklist records (see :func:`hub.store.worklist._record`) for ``conditions`` whose
        keywords are in :data:`MATCHING_KEYS`."""
        unknown = [c.keyword for c in conditions if c.keyword not in MATCHING_KEYS]
        if unknown:
            raise ValueError(f"not a worklist matching key: {unknown[0]}")
        return self.repo.search(conditions, self.default_statuses, limit=limit)

    def count(self, conditions: list[Condition]) -> int:
        return self.repo.count(conditions, self.default_statuses)
