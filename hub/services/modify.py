"""Orthanc ``/{level}/{id}/modify`` and ``/anonymize`` of stored resources.

Each instance of the resource is read from its blob, changed with pydicom (:mod:`mappings.modify`,
:mod:`mappings.anonymize`, one :class:`IdentifierMap` for the whole operation so that a study keeps
one new StudyInstanceUID), written as a new Part 10 file and stored through the single ingest path.
The instance level only answers the changed file, as Orthanc does. The sources stay unless
``KeepSource`` is false.

A request is checked completely by :meth:`ModifyService.prepare_modify` / :meth:`prepare_anonymize`
(bad body, unknown resource, identifiers the level may not change: Orthanc 1.10's refusals) before
:meth:`ModifyService.run` stores anything; ``run`` may go in a job (it takes a progress callback and
returns Orthanc's answer).
"""

from __future__ import annotations

import copy
import fcntl
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ImplicitVRLittleEndian

from hub import __version__
from hub.domain.archive import Level, StoreOutcome
from hub.domain.ids import hierarchy_ids
from hub.domain.origin import Origin
from hub.errors import HubError
from hub.services.transcode import transcode_dataset
from mappings.anonymize import body_to_anonymization, dataset_to_anonymized
from mappings.ascii import is_digits
from mappings.modify import (
    BAD_FILE_FORMAT,
    BAD_REQUEST,
    LEVELS,
    OUT_OF_RANGE,
    IdentifierMap,
    Modification,
    ModifyError,
    body_to_modification,
    check_modification,
    dataset_to_modified,
)

log = logging.getLogger(__name__)

PLURAL = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}
Progress = Callable[[int, int], None]

# Transfer syntaxes Orthanc 1.10 knows (``LookupTransferSyntax``); others are refused as unknown.
KNOWN_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105", "1.2.840.10008.1.2.4.106",
    *(f"1.2.840.10008.1.2.4.{n}" for n in (*range(50, 67), 70, 80, 81, 90, 91, 92, 93, 94, 95)),
    "1.2.840.10008.1.2.6.1", "1.3.46.670589.33.1.4.1",
}


class ResourceIndex(Protocol):
    """The index reads needed here (``hub.store.archive.ArchiveRepository``)."""

    def levels(self, public_ids: Sequence[str]) -> dict[str, tuple[str, int]]: ...

    def instances(self, level: str, pks: Sequence[int]) -> Sequence[Any]: ...  # rows: instance_id, blob_key


class Ingest(Protocol):
    def store(self, origin: Origin, source: bytes) -> Any: ...  # noqa: ANN401 - hub.domain.archive.StoreResult


@dataclass(frozen=True)
class Operation:
    """A checked request: what to change in which stored instances, and how to answer."""

    level: str  # of the route
    public_id: str
    modification: Modification
    sources: tuple[tuple[str, str], ...]  # (instance id, blob key)
    keep_source: bool = True
    transcode: str | None = None

    @property
    def is_anonymization(self) -> bool:
        return self.modification.is_anonymization


class AnonymizationCounter:
    """Orthanc's ``AnonymizationSequence``: the N of ``Anonymized<N>``, kept across restarts in a
    small file of the data directory (incremented under an exclusive lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def next(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            value = (int(text) if is_digits(text) else 0) + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(value).encode("ascii"))
            return value
        finally:
            os.close(fd)  # releases the lock


class ModifyService:
    def __init__(self, ingest: Ingest, blob_path: Callable[[str], Path], resources: ResourceIndex,
                 counter: AnonymizationCounter, delete: Callable[[Level, str], Any] | None = None) -> None:
        self.ingest = ingest
        self.blob_path = blob_path
        self.resources = resources
        self.counter = counter
        self.delete = delete  # (level, public id) -> remove a stored resource (ResourceService.delete)

    # ------------------------------------------------------------------ checking a request
    def prepare_modify(self, level: str, public_id: str, body: Any) -> Operation:  # noqa: ANN401 - JSON body
        """``POST /{level}/{id}/modify`` (Orthanc 1.10 order: body, options, resource, level rules)."""
        mod = body_to_modification(body, None if level == "Instance" else level)
        return self._prepare(level, public_id, body, mod)

    def prepare_anonymize(self, level: str, public_id: str, body: Any) -> Operation:  # noqa: ANN401
        """``POST /{level}/{id}/anonymize`` with the PS3.15 basic profile."""
        mod = body_to_anonymization(body, lambda: f"Anonymized{self.counter.next()}")
        return self._prepare(level, public_id, body, mod)

    def _prepare(self, level: str, public_id: str, body: dict[str, Any], mod: Modification) -> Operation:
        keep_source = True
        if level != "Instance" and "KeepSource" in body:
            if not isinstance(body["KeepSource"], bool):
                raise ModifyError(BAD_FILE_FORMAT, "Boolean value expected in field: KeepSource")
            keep_source = body["KeepSource"]
        transcode = None
        if "Transcode" in body and (level != "Instance" or not mod.is_anonymization):
            transcode = body["Transcode"]
            if not isinstance(transcode, str):
                raise ModifyError(BAD_FILE_FORMAT, "String value expected in field: Transcode")
            if transcode not in KNOWN_SYNTAXES:
                if level == "Instance":
                    raise ModifyError(OUT_OF_RANGE, f"Unknown transfer syntax: {transcode}")
                raise ModifyError(BAD_FILE_FORMAT, f"Unknown transfer syntax UID: {transcode}")
        # Orthanc 1.10 takes the instances under the id whatever its level (``AddChildInstances``);
        # only the instance route needs an instance.
        found = self.resources.levels([public_id]).get(public_id)
        if found is None or (level == "Instance") != (found[0] == "Instance"):
            raise HubError("unknown_resource", f"Unknown {level.lower()}: {public_id}")
        rows = self.resources.instances(found[0], [found[1]])
        sources = tuple((row.instance_id, row.blob_key) for row in rows)
        if not sources:
            raise HubError("unknown_resource", f"Unknown {level.lower()}: {public_id}")
        check_modification(mod)
        if not keep_source and self.delete is None:
            raise ModifyError(BAD_REQUEST, "KeepSource=false is not available yet: there is no delete service")
        return Operation(level, public_id, mod, sources, keep_source, transcode)

    # ------------------------------------------------------------------ running it
    def changed_file(self, op: Operation) -> bytes:
        """The instance level: the changed Part 10 file, nothing stored (Orthanc answers it)."""
        data, _ = self._change(op, op.sources[0][1], IdentifierMap(), strict=True)
        return data

    def run(self, op: Operation, *, user: str = "", progress: Progress | None = None) -> dict[str, Any]:
        """Change and store every instance; Orthanc's answer (the job's content of a single-resource
        modification: the new resource at the route's level and its patient)."""
        if op.level == "Instance":
            raise ValueError("the instance level answers a file: use changed_file()")
        ids = IdentifierMap()
        origin = Origin("rest", user=user)
        first: tuple[str, str, str, str] | None = None
        replaced: list[str] = []  # sources whose changed copy is stored under another id
        total = len(op.sources)
        failed = 0
        for done, (source_id, blob_key) in enumerate(op.sources, 1):
            data, hierarchy = self._change(op, blob_key, ids, strict=False)
            stored = self.ingest.store(origin, data)
            if stored.outcome == StoreOutcome.DUPLICATE and stored.instance.public_id != hierarchy[3]:
                # The index keeps one instance per SOP Instance UID: a kept/forced SOPInstanceUID that
                # is already stored elsewhere cannot be stored again (Orthanc would add it).
                log.warning("modified instance not stored: its SOP Instance UID is already stored elsewhere")
                failed += 1
            elif hierarchy[3] != source_id:
                replaced.append(source_id)
            first = first or hierarchy
            if progress is not None:
                progress(done, total)
        if first is None:
            raise HubError("unknown_resource", f"Unknown {op.level.lower()}: {op.public_id}")
        if not op.keep_source and self.delete is not None:
            for source_id in replaced:
                self.delete(Level.INSTANCE, source_id)
        new_id = first[LEVELS.index(op.level)]
        log.info("%s %s %s: %d instances -> %s", "anonymized" if op.is_anonymization else "modified",
                 op.level.lower(), op.public_id, total, new_id)
        return {
            "Description": "REST API",
            "FailedInstancesCount": failed,
            "ID": new_id,
            "InstancesCount": total,
            "IsAnonymization": op.is_anonymization,
            "Path": f"/{PLURAL[op.level]}/{new_id}",
            "PatientID": first[0],
            "Type": op.level,
        }

    def _change(self, op: Operation, blob_key: str, ids: IdentifierMap,
                *, strict: bool) -> tuple[bytes, tuple[str, str, str, str]]:
        """One stored instance changed and written; its new Orthanc ids (patient .. instance)."""
        try:
            ds = dcmread(self.blob_path(blob_key), force=True)
        except (OSError, InvalidDicomError) as exc:
            raise HubError("internal", f"cannot read a stored instance: {type(exc).__name__}") from None
        if op.is_anonymization:
            dataset_to_anonymized(ds, op.modification, ids)
        else:
            dataset_to_modified(ds, op.modification, ids)
        data = part10(ds, op.transcode, strict=strict)
        hierarchy = hierarchy_ids(*(str(ds.get(k, "") or "").strip() for k in (
            "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")))
        return data, hierarchy


def part10(ds: Dataset, transcode: str | None = None, *, strict: bool = True) -> bytes:
    """``ds`` as a Part 10 file with a new file meta header (as DCMTK writes it for Orthanc), in
    ``transcode`` when pydicom can: uncompressed targets (decompressing where it has a decoder) and
    RLE Lossless. Otherwise ``strict`` refuses; a resource-level job keeps the stored syntax, as Orthanc."""
    old = getattr(ds, "file_meta", None)
    source = str(old.get("TransferSyntaxUID", "") if old is not None else "") or ImplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = UID(source)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"RISHUB_{__version__}"[:16]
    ds.file_meta = meta
    if transcode and transcode != source:
        work = copy.deepcopy(ds)
        try:
            transcode_dataset(work, transcode)
            ds = work
        except Exception as exc:  # no codec here for this pair, or the pixel data does not decode
            if strict:
                raise ModifyError(BAD_REQUEST, f"Cannot transcode to transfer syntax: {transcode}") from exc
            log.warning("cannot transcode an instance to %s, keeping %s: %s", transcode, source, exc)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
