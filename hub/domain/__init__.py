"""Plain domain types shared by services and adapters."""

from hub.domain.archive import IndexRecord, InstanceRef, Level, StoreOutcome, StoreResult
from hub.domain.ids import orthanc_id
from hub.domain.origin import Origin

__all__ = ["IndexRecord", "InstanceRef", "Level", "Origin", "StoreOutcome", "StoreResult", "orthanc_id"]
