"""Retrieve: the instances a C-MOVE or C-GET (PS3.4 C.4.2, C.4.3) sends, with their blob files.

The index says what to send and how each instance is encoded; the blob store says where its bytes
are. Files are handed out as stored (PS3.4 C.4.2.3: the SCP sends the SOP Instances it holds), so
the adapter can stream them without decoding.
"""

from __future__ import annotations

from hub.domain.retrieve import RetrieveItem, RetrieveKeys
from hub.store.blobs import BlobStore
from hub.store.retrieve import RetrieveRepository


class RetrieveService:
    def __init__(self, repository: RetrieveRepository, blobs: BlobStore) -> None:
        self.repository = repository
        self.blobs = blobs

    def instances(self, keys: RetrieveKeys) -> list[RetrieveItem]:
        """Every stored instance matching ``keys``, in sending order (series, then InstanceNumber);
        an empty list when nothing matches."""
        return [
            RetrieveItem(
                row.sop_class_uid,
                row.sop_instance_uid,
                row.transfer_syntax_uid,
                self.blobs.path(row.blob_key),
                row.file_size,
            )
            for row in self.repository.instances(keys)
        ]
