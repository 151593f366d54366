"""Index records -> Orthanc 1.10 REST JSON (``/patients/{id}``, ``/statistics``, ``/metadata``).

Records are plain dicts read by ``hub.store.resources``: ``public_id``, ``main_tags`` (Orthanc
MainDicomTags as stored at ingest), ``updated_at``, the parent id and the children ids. Keys are
emitted in Orthanc's (alphabetical, jsoncpp) order. The DICOM JSON (PS3.18 F.2) rendering into
Orthanc's tag strings is in :mod:`mappings.orthanc_tags`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_is_retired, get_private_entry, keyword_for_tag

MB = 1024 * 1024

# Orthanc's RequestOrigin names (OrthancFramework Enumerations.cpp) for the hub's origin protocols.
ORIGIN_NAMES = {"dimse": "DicomProtocol", "rest": "RestApi", "dicomweb": "Plugins"}

# Instance metadata in Orthanc's MetadataType order (IndexInSeries = 1 ... PixelDataOffset = 14).
INSTANCE_METADATA = (
    "IndexInSeries", "ReceptionDate", "RemoteAET", "Origin", "TransferSyntax", "SopClassUid", "RemoteIP",
    "CalledAET", "HttpUsername", "PixelDataOffset",
)


def orthanc_time(value: datetime) -> str:
    """Orthanc's ISO-like time stamp (``LastUpdate``, ``ReceptionDate``, ``/tools/now``)."""
    return value.strftime("%Y%m%dT%H%M%S")


def is_stable(updated_at: datetime, now: datetime, stable_age: int) -> bool:
    """Orthanc ``IsStable``: nothing was added for ``StableAge`` seconds (``now`` naive UTC)."""
    return now - updated_at >= timedelta(seconds=stable_age)


def _sorted(tags: dict[str, str]) -> dict[str, str]:
    return {k: tags[k] for k in sorted(tags)}


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def index_in_series(main_tags: dict[str, str]) -> str | None:
    """Orthanc metadata ``IndexInSeries``: InstanceNumber, else ImageIndex, spaces stripped."""
    for key in ("InstanceNumber", "ImageIndex"):
        if key in main_tags:
            return main_tags[key].strip()
    return None


def expected_instances(series_tags: dict[str, str]) -> int | None:
    """Orthanc ``ExpectedNumberOfInstances`` (ServerIndex ComputeExpectedNumberOfInstances):
    ImagesInAcquisition x NumberOfTemporalPositions, NumberOfSlices x NumberOfTimeSlices, or
    CardiacNumberOfImages; ``None`` when none applies or the product is not positive."""

    def num(key: str) -> int | None:
        return _int_or_none(series_tags.get(key))

    pairs = (("ImagesInAcquisition", "NumberOfTemporalPositions"), ("NumberOfSlices", "NumberOfTimeSlices"))
    for a, b in pairs:
        if a in series_tags and b in series_tags:
            x, y = num(a), num(b)
            return x * y if x is not None and y is not None and x * y > 0 else None
    if "CardiacNumberOfImages" in series_tags:
        n = num("CardiacNumberOfImages")
        return n if n is not None and n > 0 else None
    return None


def series_status(expected: int | None, indexes: list[int | None]) -> str:
    """Orthanc series ``Status``: Unknown, Missing, Complete or Inconsistent (GetSeriesStatus)."""
    if expected is None:
        return "Unknown"
    seen: set[int] = set()
    for index in indexes:
        if index is None:
            return "Unknown"
        if not 0 < index <= expected or index in seen:
            return "Inconsistent"
        seen.add(index)
    return "Complete" if len(seen) == expected else "Missing"


def patient_to_orthanc(rec: dict[str, Any], now: datetime, stable_age: int) -> dict[str, Any]:
    return {
        "ID": rec["public_id"],
        "IsStable": is_stable(rec["updated_at"], now, stable_age),
        "LastUpdate": orthanc_time(rec["updated_at"]),
        "MainDicomTags": _sorted(rec["main_tags"]),
        "Studies": rec["children"],
        "Type": "Patient",
    }


def study_to_orthanc(rec: dict[str, Any], now: datetime, stable_age: int) -> dict[str, Any]:
    return {
        "ID": rec["public_id"],
        "IsStable": is_stable(rec["updated_at"], now, stable_age),
        "LastUpdate": orthanc_time(rec["updated_at"]),
        "MainDicomTags": _sorted(rec["main_tags"]),
        "ParentPatient": rec["parent_id"],
        "PatientMainDicomTags": _sorted(rec["patient_tags"]),
        "Series": rec["children"],
        "Type": "Study",
    }


def series_to_orthanc(rec: dict[str, Any], now: datetime, stable_age: int) -> dict[str, Any]:
    expected = expected_instances(rec["main_tags"])
    return {
        "ExpectedNumberOfInstances": expected,
        "ID": rec["public_id"],
        "Instances": rec["children"],
        "IsStable": is_stable(rec["updated_at"], now, stable_age),
        "LastUpdate": orthanc_time(rec["updated_at"]),
        "MainDicomTags": _sorted(rec["main_tags"]),
        "ParentStudy": rec["parent_id"],
        "Status": series_status(expected, [_int_or_none(t) for t in rec["children_index"]]),
        "Type": "Series",
    }


def instance_to_orthanc(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "FileSize": rec["file_size"],
        "FileUuid": rec["blob_key"],
        "ID": rec["public_id"],
        "IndexInSeries": _int_or_none(index_in_series(rec["main_tags"])),
        "MainDicomTags": _sorted(rec["main_tags"]),
        "ParentSeries": rec["parent_id"],
        "Type": "Instance",
    }


def resource_to_orthanc(level: str, rec: dict[str, Any], now: datetime, stable_age: int) -> dict[str, Any]:
    """The JSON of ``GET /{level}/{id}`` for one record; ``level`` is Patient/Study/Series/Instance."""
    if level == "Patient":
        return patient_to_orthanc(rec, now, stable_age)
    if level == "Study":
        return study_to_orthanc(rec, now, stable_age)
    if level == "Series":
        return series_to_orthanc(rec, now, stable_age)
    return instance_to_orthanc(rec)


def statistics_to_orthanc(level: str, counts: dict[str, int]) -> dict[str, Any]:
    """``GET /{level}/{id}/statistics``: counts of the levels below, sizes as strings and in MB.

    The hub stores DICOM files as received (no compression, no other attachments), so the disk,
    uncompressed and DICOM sizes are the same number."""
    size = int(counts["size"])
    out: dict[str, Any] = {}
    if level == "Patient":
        out["CountInstances"] = counts["instances"]
        out["CountSeries"] = counts["series"]
        out["CountStudies"] = counts["studies"]
    elif level == "Study":
        out["CountInstances"] = counts["instances"]
        out["CountSeries"] = counts["series"]
    elif level == "Series":
        out["CountInstances"] = counts["instances"]
    for prefix in ("Dicom", ""):
        out[f"{prefix}DiskSize"] = str(size)
        out[f"{prefix}DiskSizeMB"] = size // MB
        out[f"{prefix}UncompressedSize"] = str(size)
        out[f"{prefix}UncompressedSizeMB"] = size // MB
    return {k: out[k] for k in sorted(out)}


def instance_metadata(rec: dict[str, Any]) -> dict[str, str]:
    """Orthanc's automatic instance metadata, from what the index recorded at ingest.

    RemoteAET is always set (empty outside DIMSE); RemoteIP for DIMSE and REST; CalledAET for
    DIMSE; HttpUsername for REST; PixelDataOffset when the object has pixel data.
    """
    protocol = rec["origin_protocol"]
    out: dict[str, str] = {}
    index = index_in_series(rec["main_tags"])
    if index is not None:
        out["IndexInSeries"] = index
    out["ReceptionDate"] = orthanc_time(rec["received_at"])
    out["RemoteAET"] = rec["origin_remote_aet"] or ""
    out["Origin"] = ORIGIN_NAMES.get(protocol, "Unknown")
    out["TransferSyntax"] = rec["transfer_syntax_uid"]
    out["SopClassUid"] = rec["sop_class_uid"]
    if protocol in ("dimse", "rest") and rec["origin_remote_ip"] is not None:
        out["RemoteIP"] = rec["origin_remote_ip"]
    if protocol == "dimse" and rec["origin_called_aet"] is not None:
        out["CalledAET"] = rec["origin_called_aet"]
    if protocol == "rest":
        out["HttpUsername"] = rec["origin_user"] or ""
    if rec["pixel_data_offset"] is not None:
        out["PixelDataOffset"] = str(rec["pixel_data_offset"])
    return out


def parent_metadata(level: str, rec: dict[str, Any]) -> dict[str, str]:
    """Metadata Orthanc keeps on patients, studies and series: LastUpdate, and on series the
    ExpectedNumberOfInstances (when known) and the RemoteAET of the instance that created it."""
    out: dict[str, str] = {}
    if level == "Series":
        out["RemoteAET"] = rec.get("first_remote_aet") or ""
        expected = expected_instances(rec["main_tags"])
        if expected is not None:
            out["ExpectedNumberOfInstances"] = str(expected)
    out["LastUpdate"] = orthanc_time(rec["updated_at"])
    return out


# --------------------------------------------------------------------------- DICOM JSON -> Orthanc tags

BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
MAX_TAG_LENGTH = 256  # Orthanc's ORTHANC_MAXIMUM_TAG_LENGTH: longer values are "TooLong"
UNKNOWN_NAME = "Unknown Tag & Data"


def tag_key(tag_hex: str) -> str:
    """``00100010`` -> ``0010,0010`` (Orthanc's lower-case tag key)."""
    t = tag_hex.lower()
    return f"{t[:4]},{t[4:]}"


@lru_cache(maxsize=4096)
def _keyword(tag_hex: str) -> str:
    return keyword_for_tag(int(tag_hex, 16)) or ""


@lru_cache(maxsize=4096)
def _public_name(tag_hex: str) -> str:
    """DCMTK's name (the DICOM keyword, ``RETIRED_`` before retired ones; Orthanc patches
    OtherPatientIDs back to its plain name)."""
    keyword = _keyword(tag_hex)
    if not keyword:
        return UNKNOWN_NAME
    if keyword != "OtherPatientIDs" and dictionary_is_retired(int(tag_hex, 16)):
        return "RETIRED_" + keyword
    return keyword


@lru_cache(maxsize=4096)
def _private_name(tag_hex: str, creator: str) -> str:
    try:
        description = get_private_entry(int(tag_hex, 16), creator)[2]
    except KeyError:
        return UNKNOWN_NAME
    return "".join(w[:1].upper() + w[1:] for w in description.replace("-", " ").split())


def _creator_of(tag_hex: str, dataset: dict[str, Any]) -> str | None:
    group, element = tag_hex[:4], int(tag_hex[4:], 16)
    if int(group, 16) % 2 == 0 or element < 0x1000:
        return None
    creator = dataset.get(f"{group}00{element >> 8:02X}".upper())
    values = (creator or {}).get("Value") or []
    return str(values[0]).strip() if values else ""


def tag_name(tag_hex: str, dataset: dict[str, Any]) -> str:
    """Orthanc ``Name``: the DICOM keyword; ``PrivateCreator`` for the private creator elements."""
    group, element = int(tag_hex[:4], 16), int(tag_hex[4:], 16)
    if group % 2 == 1:
        if 0x0010 <= element <= 0x00FF:
            return "PrivateCreator"
        creator = _creator_of(tag_hex, dataset)
        return _private_name(tag_hex.upper(), creator) if creator else UNKNOWN_NAME
    return _public_name(tag_hex.upper())


def _value_string(vr: str | None, value: Any) -> str:
    if value is None:
        return ""
    if vr == "PN" and isinstance(value, dict):
        parts = [value.get("Alphabetic", ""), value.get("Ideographic", ""), value.get("Phonetic", "")]
        while parts and not parts[-1]:
            parts.pop()
        return "=".join(parts)
    if vr == "AT" and isinstance(value, str) and len(value) == 8:
        return tag_key(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if vr in ("FL", "FD"):
            return f"{value:.17g}"  # Orthanc prints binary floats as doubles, 17 digits
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def element_string(element: dict[str, Any]) -> str | None:
    """Orthanc's string for a DICOM JSON element (values joined by ``\\``, person name groups by
    ``=``); ``None`` where Orthanc shows ``Null`` (binary and bulk data) or a ``Sequence``.

    DS values come back from the JSON numbers, so ``5.000000`` in the file reads ``5`` here."""
    vr = element.get("vr")
    if vr == "SQ" or vr in BINARY_VRS or "InlineBinary" in element or "BulkDataURI" in element:
        return None
    values = element.get("Value")
    if not values:
        return ""
    return "\\".join(_value_string(vr, v) for v in values)


def element_to_orthanc(tag_hex: str, element: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    """One element in Orthanc's full format: Name, PrivateCreator (private tags), Type, Value."""
    out: dict[str, Any] = {"Name": tag_name(tag_hex, dataset)}
    creator = _creator_of(tag_hex, dataset)
    if creator:
        out["PrivateCreator"] = creator
    if element.get("vr") == "SQ":
        out["Type"] = "Sequence"
        out["Value"] = [dataset_to_orthanc(item) for item in element.get("Value") or [] if isinstance(item, dict)]
        return out
    text = element_string(element)
    if text is None:
        out["Type"], out["Value"] = "Null", None
    elif len(text) > MAX_TAG_LENGTH:
        out["Type"], out["Value"] = "TooLong", None
    else:
        out["Type"], out["Value"] = "String", text
    return out


def dataset_to_orthanc(dataset: dict[str, Any]) -> dict[str, Any]:
    """A DICOM JSON data set in Orthanc's full format, keys sorted as Orthanc sorts them."""
    items = sorted(dataset.items(), key=lambda i: i[0].lower())
    return {tag_key(t): element_to_orthanc(t, e, dataset) for t, e in items}


def instance_strings(dataset: dict[str, Any], exact: dict[str, str] | None = None) -> dict[str, str]:
    """The top-level elements Orthanc types ``String`` (tag -> value). ``exact``: keyword -> the
    value string kept at ingest (the instance's MainDicomTags), preferred to the JSON rendering."""
    out: dict[str, str] = {}
    for tag_hex, element in dataset.items():
        text = element_string(element)
        if text is None:
            continue
        if exact:
            keyword = _keyword(tag_hex.upper())
            if keyword in exact:
                text = exact[keyword]
        if len(text) <= MAX_TAG_LENGTH:
            out[tag_hex.upper()] = text
    return out


def shared_tags(instances: Iterable[tuple[dict[str, Any], dict[str, str]]]) -> dict[str, Any]:
    """Orthanc ``/{level}/{id}/shared-tags`` (ExtractSharedTags): the String-typed top-level tags
    whose value is the same in every instance, in the full format. ``instances`` yields (DICOM
    JSON, MainDicomTags of the instance) pairs."""
    shared: dict[str, str] | None = None
    first: dict[str, Any] = {}
    for dataset, exact in instances:
        strings = instance_strings(dataset, exact)
        if shared is None:
            shared, first = strings, dataset
        else:
            shared = {t: v for t, v in shared.items() if strings.get(t) == v}
    out: dict[str, Any] = {}
    for tag_hex in sorted(shared or {}, key=str.lower):
        entry = element_to_orthanc(tag_hex, first[tag_hex], first)
        entry["Value"] = (shared or {})[tag_hex]
        out[tag_key(tag_hex)] = entry
    return out


def simplify_tags(full: dict[str, Any]) -> dict[str, Any]:
    """Orthanc ``?simplify``: keys are tag names, values the strings (sequences as lists)."""
    out: dict[str, Any] = {}
    for entry in full.values():
        value = entry["Value"]
        if entry["Type"] == "Sequence":
            value = [simplify_tags(item) for item in value]
        out[entry["Name"]] = value
    return {k: out[k] for k in sorted(out)}


def short_tags(full: dict[str, Any]) -> dict[str, Any]:
    """Orthanc ``?short``: keys are the tags, values the strings (sequences as lists)."""
    out: dict[str, Any] = {}
    for key, entry in full.items():
        value = entry["Value"]
        out[key] = [short_tags(item) for item in value] if entry["Type"] == "Sequence" else value
    return out
