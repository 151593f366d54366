"""DICOM data set -> DICOM JSON Model (PS3.18 Annex F.2), bulk data replaced by references.

Binary values above a threshold and the pixel data are not copied: they become a ``BulkDataURI``
relative to the instance (``bulk/GGGGEEEE``), which the DICOMweb adapter resolves against the
instance's WADO-RS URL (PS3.18 F.2.6).
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)
BULK_THRESHOLD = 1024  # bytes; binary values larger than this are referenced, not inlined
PIXEL_DATA_TAGS = {"7FE00010": "PixelData", "7FE00008": "FloatPixelData", "7FE00009": "DoubleFloatPixelData"}


def bulk_uri(tag_hex: str) -> str:
    """Relative bulk data reference for a top-level element."""
    return f"bulk/{tag_hex.upper()}"


def _bulk_handler(elem: DataElement) -> str:
    return bulk_uri(f"{elem.tag:08X}")


def dataset_to_dicom_json(ds: Dataset, pixel_vr: str | None = None, pixel_tag: str = "7FE00010") -> dict[str, Any]:
    """Return the PS3.18 F.2 JSON of ``ds`` (header only) plus a pixel data reference.

    ``pixel_vr`` is the VR of the pixel data element that followed the header (``None`` when the
    object has no pixel data); the caller learns it from the stream without reading the pixels.
    """
    out: dict[str, Any] = {}
    # Element by element instead of ``to_json_dict(suppress_invalid_tags=True)``: that switches
    # pydicom's process-wide reading validation to RAISE for its duration, and concurrent ingests
    # (threads) could leave it there for good. A value that cannot be written as JSON is left out.
    for key in ds.keys():
        try:
            out[f"{key:08X}"] = ds[key].to_json_dict(_bulk_handler, BULK_THRESHOLD)
        except Exception:  # noqa: BLE001 - an unconvertible value (PHI-free: only the tag is logged)
            log.warning("element %08X left out of the DICOM JSON: its value cannot be converted", key)
    _tidy_numbers(out)
    if pixel_vr:
        out[pixel_tag] = {"vr": pixel_vr, "BulkDataURI": bulk_uri(pixel_tag)}
    return out


def _tidy_numbers(obj: dict[str, Any]) -> None:
    """DS values that are whole numbers as JSON integers (``120``, not ``120.0``; PS3.18 F.2.3)."""
    for elem in obj.values():
        if not isinstance(elem, dict):
            continue
        values = elem.get("Value")
        if not values:
            continue
        if elem.get("vr") == "DS":
            elem["Value"] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
        elif elem.get("vr") == "SQ":
            for item in values:
                if isinstance(item, dict):
                    _tidy_numbers(item)
