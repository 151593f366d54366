"""Orthanc-style resources: patients, studies, series and instances read from the index as Orthanc
1.10 shows them, ``/tools/find`` and ``/tools/lookup``, and deletion (rows and blobs as one unit).

Deletion follows the crash-safe order of the ingest path: the rows go and the blob keys enter
``blob_trash`` in one transaction; the files are deleted after the commit and the trash cleared;
a crash in between is finished by ``IngestService.recover`` at the next start.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from hub.domain.archive import Level
from hub.errors import HubError
from hub.store import BlobStore, Database, IndexRepository
from hub.store.delete import DeleteRepository
from hub.store.resources import LEVEL_OF, ORDER, ResourceRepository
from mappings.index_to_orthanc import (
    instance_metadata,
    parent_metadata,
    resource_to_orthanc,
    shared_tags,
    short_tags,
    simplify_tags,
    statistics_to_orthanc,
)
from mappings.orthanc_find import FindRequest, filter_matches

log = logging.getLogger(__name__)

PATHS = {Level.PATIENT: "patients", Level.STUDY: "studies", Level.SERIES: "series", Level.INSTANCE: "instances"}


def unknown() -> HubError:
    return HubError("unknown_resource", "Unknown resource")


def ref(level: Level, public_id: str) -> dict[str, str]:
    """Orthanc's reference to a resource: ``{"ID", "Path", "Type"}``."""
    return {"ID": public_id, "Path": f"/{PATHS[level]}/{public_id}", "Type": level.value}


class ResourceService:
    def __init__(
        self,
        repository: ResourceRepository,
        deleter: DeleteRepository,
        blobs: BlobStore,
        index: IndexRepository,
        *,
        stable_age: int = 60,
    ) -> None:
        self.repository = repository
        self.deleter = deleter
        self.blobs = blobs
        self.index = index
        self.stable_age = stable_age

    @classmethod
    def build(cls, db: Database, blobs: BlobStore, index: IndexRepository, *, stable_age: int = 60) -> ResourceService:
        return cls(ResourceRepository(db), DeleteRepository(db), blobs, index, stable_age=stable_age)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    # ------------------------------------------------------------------ reads
    def list(self, level: Level, *, since: int = 0, limit: int | None = None, expand: bool = False) -> list[Any]:
        """``GET /{level}``: ids in arrival order, or their full JSON with ``expand``."""
        ids = self.repository.list_ids(level, since, limit)
        return self.expand(level, ids) if expand else ids

    def expand(self, level: Level, public_ids: list[str]) -> list[dict[str, Any]]:
        now = self.now()
        return [
            resource_to_orthanc(level.value, rec, now, self.stable_age)
            for rec in self.repository.records(level, public_ids)
        ]

    def get(self, level: Level, public_id: str) -> dict[str, Any]:
        """``GET /{level}/{id}``."""
        found = self.expand(level, [public_id])
        if not found:
            raise unknown()
        return found[0]

    def children(self, level: Level, public_id: str, target: Level) -> list[dict[str, Any]]:
        """``GET /{level}/{id}/{studies|series|instances}``: the resources of ``target`` below."""
        ids = self.repository.descendants(level, public_id, target)
        if ids is None:
            raise unknown()
        return self.expand(target, ids)

    def parent(self, level: Level, public_id: str, target: Level) -> dict[str, Any]:
        """``GET /{level}/{id}/{patient|study|series}``: an ancestor's full JSON."""
        found = self.repository.ancestor(level, public_id, target)
        if found is None:
            raise unknown()
        return self.get(target, found)

    def statistics(self, level: Level, public_id: str) -> dict[str, Any]:
        counts = self.repository.statistics(level, public_id)
        if counts is None:
            raise unknown()
        return statistics_to_orthanc(level.value, counts)

    def shared_tags(self, level: Level, public_id: str, form: str = "full") -> dict[str, Any]:
        """``/{level}/{id}/shared-tags``, from the DICOM JSON kept in the index (no file read).
        ``form``: ``full`` (Orthanc's default), ``simplify`` or ``short``."""
        rows = self.repository.instance_datasets(level, public_id)
        if rows is None:
            raise unknown()
        full = shared_tags((json.loads(ds), json.loads(tags)) for ds, tags in rows)
        if form == "simplify":
            return simplify_tags(full)
        if form == "short":
            return short_tags(full)
        return full

    def metadata(self, level: Level, public_id: str) -> dict[str, str]:
        """Orthanc's automatic metadata of a resource, in Orthanc's MetadataType order."""
        if level is Level.INSTANCE:
            row = self.repository.instance_row(public_id)
            if row is None:
                raise unknown()
            return instance_metadata(row)
        parent = self.repository.parent_row(level, public_id)
        if parent is None:
            raise unknown()
        return parent_metadata(level.value, parent)

    # ------------------------------------------------------------------ tools
    def find(self, request: FindRequest) -> list[Any]:
        """``POST /tools/find``; ``Since``/``Limit`` count matches (Orthanc ``ServerContext::Apply``)."""
        level = LEVEL_OF[request.query.level]
        ids: list[str] = []
        if request.matches_nothing:
            pass
        elif not request.filters:
            ids = self.repository.find(request.query, request.since, request.limit)
        else:
            skipped = 0
            for public_id, dataset in self.repository.find_with_dataset(request.query):
                parsed = json.loads(dataset) if dataset else {}
                if not all(filter_matches(f, parsed) for f in request.filters):
                    continue
                if skipped < request.since:
                    skipped += 1
                    continue
                ids.append(public_id)
                if request.limit and len(ids) >= request.limit:
                    break
        return self.expand(level, ids) if request.expand else ids

    def lookup(self, value: str) -> list[dict[str, str]]:
        """``POST /tools/lookup``: the resources a PatientID or DICOM UID names."""
        return [ref(level, public_id) for level, public_id in self.repository.lookup(value)]

    # ------------------------------------------------------------------ delete
    def delete(self, level: Level, public_id: str) -> dict[str, Any]:
        """``DELETE /{level}/{id}``; answers ``{"RemainingAncestor": ref or null}`` like Orthanc."""
        deletion = self.deleter.delete(level, public_id)
        if deletion is None:
            raise unknown()
        if deletion.blob_keys:
            self.blobs.delete(deletion.blob_keys)
            self.index.clear_trash(deletion.blob_keys)
        counts = ", ".join(f"{len(deletion.removed.get(lvl, []))} {lvl.value.lower()}" for lvl in ORDER)
        log.info("deleted %s %s (%s)", level.value.lower(), public_id, counts)
        remaining = deletion.remaining
        return {"RemainingAncestor": ref(*remaining) if remaining else None}
