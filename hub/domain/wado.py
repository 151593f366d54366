"""An instance as DICOMweb retrieval sees it (PS3.18 10.4): its UIDs, encoding, blob and metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class WadoInstance:
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    file_size: int
    number_of_frames: int
    metadata_json: str
    received_at: datetime
    pixel_data_offset: int | None = None  # of the (7FE0,0010) element's tag in the file
    public_id: str = ""  # Orthanc id (/instances/{id})
