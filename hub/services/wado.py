"""DICOMweb retrieval (PS3.18 10.4): which files and metadata a WADO-RS/WADO-URI request names.

Metadata responses are assembled from the DICOM JSON stored at ingest, as text: each instance's
relative bulk data references (``bulk/GGGGEEEE``) become absolute URLs under the instance's WADO-RS
URL (PS3.18 F.2.6) by a string substitution, without parsing or re-reading anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hub.domain.wado import WadoInstance
from hub.errors import HubError
from hub.store.blobs import BlobStore
from hub.store.wado import WadoRepository

_BULK = '"BulkDataURI":"bulk/'


class WadoService:
    def __init__(self, repository: WadoRepository, blobs: BlobStore) -> None:
        self.repository = repository
        self.blobs = blobs

    def instances(self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
                  *, with_metadata: bool = False) -> list[WadoInstance]:
        """The instances the URL names; ``unknown_resource`` (404) when there are none."""
        found = self.repository.instances(study_uid, series_uid, sop_uid, with_metadata=with_metadata)
        if not found:
            raise HubError("unknown_resource", "no such study, series or instance")
        return found

    def instance_by_uid(self, sop_uid: str) -> WadoInstance:
        found = self.repository.instance_by_uid(sop_uid)
        if found is None:
            raise HubError("unknown_resource", "no such instance")
        return found

    def path(self, instance: WadoInstance) -> Path:
        return self.blobs.path(instance.blob_key)

    @staticmethod
    def instance_url(base: str, inst: WadoInstance) -> str:
        return f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_instance_uid}"

    def metadata_json(self, instances: list[WadoInstance], base: str) -> bytes:
        """The JSON array of the instances' metadata (PS3.18 10.4.1.1.2), bulk data URIs absolute."""
        parts = []
        for inst in instances:
            text = inst.metadata_json
            if _BULK in text:
                text = text.replace(_BULK, f'"BulkDataURI":"{self.instance_url(base, inst)}/bulk/')
            parts.append(text)
        return ("[" + ",".join(parts) + "]").encode("utf-8")

    def bulk_value(self, instance: WadoInstance, tag: str) -> bytes:
        """The value of the top-level element ``tag`` (8 hex digits) that the metadata references as
        bulk data (PS3.18 F.2.6); ``unknown_resource`` when the object has no such element."""
        import warnings

        from pydicom import dcmread

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(self.path(instance), defer_size=4096)
        elem = ds.get(int(tag, 16))
        if elem is None or not isinstance(elem.value, (bytes, bytearray)):
            raise HubError("unknown_resource", f"no bulk data at {tag}")
        return bytes(elem.value)

    @staticmethod
    def etag(instances: list[WadoInstance]) -> str:
        """A validator that changes whenever an instance is added, replaced or removed."""
        h = hashlib.sha1(usedforsecurity=False)
        for inst in instances:
            h.update(f"{inst.sop_instance_uid}|{inst.blob_key}|".encode())
        return h.hexdigest()
