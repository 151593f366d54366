"""THE single store path: C-STORE, STOW-RS, REST upload and ``rishub import`` all call :meth:`store`.

Order of operations (success is reported only when both the blob and the index are durable):

1. stage the received bytes unchanged in the blob store (temp file, fsync, rename);
2. read the header only (no pixel decode) and check its structure and identifying UIDs;
3. compute the Orthanc ids and index patient/study/series/instance, the DICOM JSON metadata,
   counters, change log and origin in one transaction;
4. publish the blob to its sharded place; delete any blob the transaction released.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from hub.dicomfile import read_header
from hub.domain.archive import IndexRecord, StoreOutcome, StoreResult
from hub.domain.ids import hierarchy_ids
from hub.domain.origin import Origin
from hub.errors import HubError, StorageFailure
from hub.store import BlobStore, IndexRepository, NewInstance
from hub.store.blobs import StagedBlob
from mappings.dicom_json import dataset_to_dicom_json
from mappings.dicom_to_index import dataset_to_index, missing_uids

log = logging.getLogger(__name__)

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
Listener = Callable[[StoreResult, Origin], None]


@dataclass
class ParsedHeader:
    """What the header of one object gives the index (picklable: it crosses process boundaries)."""

    record: IndexRecord
    ids: tuple[str, str, str, str]
    pixel_data_offset: int | None


def parse_staged(path: str, expected_sop_class_uid: str | None = None, expected_sop_instance_uid: str | None = None,
                 expected_study_uid: str | None = None) -> ParsedHeader:
    """Step 2: read the header only (no pixel decode), check its structure and identifying UIDs
    (PS3.10 7.1, PS3.5 9.1) and build the index record with the DICOM JSON metadata (PS3.18 F.2)."""
    header = read_header(path)
    ds = header.dataset
    missing = missing_uids(ds)
    if missing:
        raise HubError("missing_attribute", f"missing {', '.join(missing)}", attribute=missing[0])
    if expected_sop_instance_uid and str(ds.SOPInstanceUID).strip() != expected_sop_instance_uid.strip():
        raise HubError("invalid_attribute",
                       "SOPInstanceUID of the data set differs from the request's Affected SOP Instance UID",
                       attribute="SOPInstanceUID")
    if expected_sop_class_uid and str(ds.SOPClassUID).strip() != expected_sop_class_uid.strip():
        raise HubError("invalid_attribute",
                       "SOPClassUID of the data set differs from the request's Affected SOP Class UID",
                       attribute="SOPClassUID")
    for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if len(str(ds.get(keyword, "")).strip()) > 64:  # PS3.5 9.1: a UID has at most 64 characters
            raise HubError("invalid_attribute", f"{keyword} is longer than 64 characters", attribute=keyword)
    if expected_study_uid and str(ds.StudyInstanceUID).strip() != expected_study_uid.strip():
        raise HubError("invalid_attribute", "StudyInstanceUID differs from the one the request names",
                       attribute="StudyInstanceUID")
    record = dataset_to_index(ds, header.transfer_syntax_uid)
    record.metadata = dataset_to_dicom_json(ds, header.pixel_data_vr, header.pixel_data_tag or "7FE00010")
    ids = hierarchy_ids(record.patient["patient_id"], record.study["study_uid"], record.series["series_uid"],
                        record.instance["sop_instance_uid"])
    return ParsedHeader(record, ids, header.pixel_data_offset)


def _parse_in_worker(path: str, expected_study_uid: str | None) -> ParsedHeader | tuple[str, str, str | None]:
    """:func:`parse_staged` in a worker process; a refusal comes back as (code, message, attribute)."""
    try:
        return parse_staged(path, expected_study_uid=expected_study_uid)
    except HubError as exc:
        return exc.code, exc.message, exc.attribute


@dataclass
class Prepared:
    """An object staged and parsed by :meth:`IngestService.prepare`, waiting for its commit."""

    origin: Origin
    staged: StagedBlob
    new: NewInstance


class IngestService:
    def __init__(self, blobs: BlobStore, index: IndexRepository, *, duplicate_policy: str = "keep",
                 parse_workers: int = 0) -> None:
        self.blobs = blobs
        self.index = index
        self.duplicate_policy = duplicate_policy
        self.parse_workers = parse_workers  # worker processes of prepare_parallel (0: parse in the caller)
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` after each committed store (routing, order linking, notifications)."""
        self._listeners.append(listener)

    def store(
        self,
        origin: Origin,
        source: Source,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
        expected_study_uid: str | None = None,
        consume: bool = False,
    ) -> StoreResult:
        """Store one DICOM Part 10 object; raise :class:`HubError` when it cannot be accepted.

        ``consume``: ``source`` is a receive buffer file the caller gives up (linked, not copied).
        """
        prepared = self.prepare(origin, source, expected_sop_class_uid=expected_sop_class_uid,
                                expected_sop_instance_uid=expected_sop_instance_uid,
                                expected_study_uid=expected_study_uid, consume=consume)
        result = self.commit([prepared])[0]
        if isinstance(result, HubError):
            raise result
        return result

    def prepare(
        self,
        origin: Origin,
        source: Source,
        *,
        expected_sop_class_uid: str | None = None,
        expected_sop_instance_uid: str | None = None,
        expected_study_uid: str | None = None,
        consume: bool = False,
    ) -> Prepared:
        """Steps 1-2 for one object: stage the bytes, read and check the header, build the index
        record. Thread-safe; nothing is visible until :meth:`commit`. Raises :class:`HubError`."""
        try:
            staged = self.blobs.stage(source, consume=consume, background_sync=True)
        except OSError as exc:
            log.error("staging failed (%s): %s", origin.describe(), exc)
            raise StorageFailure(f"cannot write to the blob store: {exc.strerror or exc}") from None
        try:
            parsed = parse_staged(str(staged.path), expected_sop_class_uid, expected_sop_instance_uid,
                                  expected_study_uid)
        except BaseException:
            self.blobs.discard(staged)
            raise
        return self._prepared(origin, staged, parsed)

    def prepare_parallel(
        self, origin: Origin, source: Source, *, expected_study_uid: str | None = None, consume: bool = False
    ) -> Future[Prepared]:
        """:meth:`prepare` with the header parsed in a worker process (bulk ingest such as STOW-RS:
        the parsing then runs on another core than the request's reading and indexing). Falls back
        to the calling thread when no worker pool is configured."""
        pool = self._parse_pool()
        if pool is None:
            done: Future[Prepared] = Future()
            try:
                done.set_result(self.prepare(origin, source, expected_study_uid=expected_study_uid, consume=consume))
            except BaseException as exc:
                done.set_exception(exc)
            return done
        try:
            staged = self.blobs.stage(source, consume=consume, background_sync=True)
        except OSError as exc:
            log.error("staging failed (%s): %s", origin.describe(), exc)
            raise StorageFailure(f"cannot write to the blob store: {exc.strerror or exc}") from None
        out: Future[Prepared] = Future()

        def finish(f: Future[ParsedHeader | tuple[str, str, str | None]]) -> None:
            try:
                parsed = f.result()
                if isinstance(parsed, tuple):  # a HubError raised in the worker, sent back as fields
                    code, message, attribute = parsed
                    raise HubError(code, message, attribute=attribute)
                out.set_result(self._prepared(origin, staged, parsed))
            except BaseException as exc:
                self.blobs.discard(staged)
                out.set_exception(exc)

        try:
            pool.submit(_parse_in_worker, str(staged.path), expected_study_uid).add_done_callback(finish)
        except (RuntimeError, OSError) as exc:  # a broken or unstartable pool: parse here instead
            log.warning("header parse workers unavailable (%s): parsing in the request thread", type(exc).__name__)
            try:
                out.set_result(self._prepared(origin, staged, parse_staged(str(staged.path),
                                                                           expected_study_uid=expected_study_uid)))
            except BaseException as err:
                self.blobs.discard(staged)
                out.set_exception(err)
        return out

    def _parse_pool(self) -> ProcessPoolExecutor | None:
        if self.parse_workers <= 0:
            return None
        with self._pool_lock:
            if self._pool is None:
                # forkserver: a clean process to fork workers from (forking this threaded process is unsafe)
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["hub.services.ingest"])
                self._pool = ProcessPoolExecutor(self.parse_workers, mp_context=ctx)
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    @staticmethod
    def _prepared(origin: Origin, staged: StagedBlob, parsed: ParsedHeader) -> Prepared:
        return Prepared(origin, staged, NewInstance(parsed.record, parsed.ids, staged.key, staged.size,
                                                    parsed.pixel_data_offset, origin))

    def commit(self, batch: list[Prepared]) -> list[StoreResult | HubError]:
        """Steps 3-4 for prepared objects: index them in ONE transaction (committed after every
        blob's fsync), publish the blobs, then tell the listeners. One answer per object, in order:
        a :class:`StoreResult`, or the :class:`HubError` that refused that object alone."""
        if not batch:
            return []

        def durable() -> None:
            for p in batch:
                self.blobs.wait_durable(p.staged)

        try:
            outcomes = self.index.add_instances([p.new for p in batch], self.duplicate_policy, before_commit=durable)
        except BaseException as exc:
            for p in batch:
                self.blobs.discard(p.staged)
            if isinstance(exc, HubError):
                raise
            if not isinstance(exc, Exception):
                raise
            log.exception("index write failed (%s)", batch[0].origin.describe())
            raise StorageFailure(f"cannot write the index: {type(exc).__name__}") from None
        results: list[StoreResult | HubError] = []
        to_publish = []
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, HubError) or outcome.outcome is StoreOutcome.DUPLICATE:
                self.blobs.discard(p.staged)
            else:
                to_publish.append(p.staged)
        self.blobs.publish_many(to_publish)
        for p, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, HubError):
                results.append(outcome)
                continue
            if outcome.released_blobs:
                self.blobs.delete(outcome.released_blobs)
                self.index.clear_trash(outcome.released_blobs)
            rec = p.new.record
            result = StoreResult(outcome.outcome, outcome.ref, p.staged.size,
                                 sop_class_uid=rec.instance["sop_class_uid"], study_uid=rec.study["study_uid"],
                                 series_uid=rec.series["series_uid"])
            log.info("%s instance %s (%d bytes) from %s",
                     result.outcome.value, result.instance.public_id, result.size, p.origin.describe())
            for listener in self._listeners:
                try:
                    listener(result, p.origin)
                except Exception:  # a listener never undoes a committed store
                    log.exception("store listener failed")
            results.append(result)
        return results

    def recover(self) -> tuple[int, int, int]:
        """Finish what a crashed process left: staged blobs and queued blob deletions."""
        published, deleted = self.blobs.recover(self.index.known_blob_keys)
        trash = self.index.pending_trash()
        if trash:
            still_used = self.index.known_blob_keys(trash)
            gone = [k for k in trash if k not in still_used]
            self.blobs.delete(gone)
            self.index.clear_trash(trash)
        return published, deleted, len(trash)

