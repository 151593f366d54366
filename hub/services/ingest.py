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
import os
from collections.abc import Callable
from typing import BinaryIO

from hub.dicomfile import read_header
from hub.domain.archive import StoreOutcome, StoreResult
from hub.domain.ids import hierarchy_ids
from hub.domain.origin import Origin
from hub.errors import HubError, StorageFailure
from hub.store import BlobStore, IndexRepository, NewInstance
from mappings.dicom_json import dataset_to_dicom_json
from mappings.dicom_to_index import dataset_to_index, missing_uids

log = logging.getLogger(__name__)

Source = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO
Listener = Callable[[StoreResult, Origin], None]


class IngestService:
    def __init__(self, blobs: BlobStore, index: IndexRepository, *, duplicate_policy: str = "keep") -> None:
        self.blobs = blobs
        self.index = index
        self.duplicate_policy = duplicate_policy
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
        consume: bool = False,
    ) -> StoreResult:
        """Store one DICOM Part 10 object; raise :class:`HubError` when it cannot be accepted.

        ``consume``: ``source`` is a receive buffer file the caller gives up (linked, not copied).
        """
        try:
            staged = self.blobs.stage(source, consume=consume, background_sync=True)
        except OSError as exc:
            log.error("staging failed (%s): %s", origin.describe(), exc)
            raise StorageFailure(f"cannot write to the blob store: {exc.strerror or exc}") from None
        published = False
        try:
            header = read_header(staged.path)
            ds = header.dataset
            missing = missing_uids(ds)
            if missing:
                raise HubError("missing_attribute", f"missing {', '.join(missing)}", attribute=missing[0])
            if expected_sop_instance_uid and str(ds.SOPInstanceUID).strip() != expected_sop_instance_uid.strip():
                raise HubError(
                    "invalid_attribute",
                    "SOPInstanceUID of the data set differs from the request's Affected SOP Instance UID",
                    attribute="SOPInstanceUID",
                )
            if expected_sop_class_uid and str(ds.SOPClassUID).strip() != expected_sop_class_uid.strip():
                raise HubError(
                    "invalid_attribute",
                    "SOPClassUID of the data set differs from the request's Affected SOP Class UID",
                    attribute="SOPClassUID",
                )
            record = dataset_to_index(ds, header.transfer_syntax_uid)
            record.metadata = dataset_to_dicom_json(ds, header.pixel_data_vr, header.pixel_data_tag or "7FE00010")
            ids = hierarchy_ids(
                record.patient["patient_id"],
                record.study["study_uid"],
                record.series["series_uid"],
                record.instance["sop_instance_uid"],
            )
            new = NewInstance(record, ids, staged.key, staged.size, header.pixel_data_offset, origin)
            try:
                outcome = self.index.add_instance(
                    new, self.duplicate_policy, before_commit=lambda: self.blobs.wait_durable(staged)
                )
            except HubError:
                raise
            except Exception as exc:  # database down, disk full, ...
                log.exception("index write failed (%s)", origin.describe())
                raise StorageFailure(f"cannot write the index: {type(exc).__name__}") from None
            if outcome.outcome is StoreOutcome.DUPLICATE:
                self.blobs.discard(staged)
            else:
                self.blobs.publish(staged)
                published = True
            if outcome.released_blobs:
                self.blobs.delete(outcome.released_blobs)
                self.index.clear_trash(outcome.released_blobs)
        except BaseException:
            if not published:
                self.blobs.discard(staged)
            raise
        result = StoreResult(outcome.outcome, outcome.ref, staged.size)
        log.info(
            "%s instance %s (%d bytes) from %s",
            result.outcome.value, result.instance.public_id, result.size, origin.describe(),
        )
        for listener in self._listeners:
            try:
                listener(result, origin)
            except Exception:  # a listener never undoes a committed store
                log.exception("store listener failed")
        return result

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

