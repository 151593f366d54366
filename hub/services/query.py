"""Find: one query model for C-FIND, QIDO-RS, ``/tools/find`` and FHIR search (PS3.4 C.4.1).

Adds the computed return keys (PS3.4 C.3.2-C.3.5): NumberOf*Related*, ModalitiesInStudy,
SOPClassesInStudy, RetrieveAETitle, InstanceAvailability.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.domain.query import Query
from hub.store.query import QueryRepository


class QueryService:
    def __init__(self, repository: QueryRepository, ae_title: str) -> None:
        self.repository = repository
        self.ae_title = ae_title

    def find(self, query: Query, requested: list[str]) -> Iterator[dict[str, Any]]:
        """Stream result records; ``record['computed']`` holds the requested computed keys."""
        wanted = set(requested)
        for rec in self.repository.search(query):
            computed: dict[str, Any] = {k: v for k, v in rec["counts"].items() if k in wanted}
            if "SOPClassesInStudy" in wanted and "study_pk" in rec:
                computed["SOPClassesInStudy"] = self.repository.sop_classes_in_study(rec["study_pk"])
            if "RetrieveAETitle" in wanted:
                computed["RetrieveAETitle"] = self.ae_title
            if "InstanceAvailability" in wanted:
                computed["InstanceAvailability"] = "ONLINE"
            rec["computed"] = computed
            yield rec

    def count(self, query: Query) -> int:
        return self.repository.count(query)
