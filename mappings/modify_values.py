"""Tags, paths and element values of Orthanc ``/modify`` bodies (``FromDcmtkBridge::ParseTag``,
``DicomPath``, ``FromDcmtkBridge::FromJson``), and the refusals they raise with Orthanc's error codes."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR, private_dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from hub.errors import HubError
from mappings.ascii import is_digits

LEVELS = ("Patient", "Study", "Series", "Instance")
PATIENT_ID, PATIENT_NAME = 0x00100020, 0x00100010
STUDY_UID, SERIES_UID, SOP_UID = 0x0020000D, 0x0020000E, 0x00080018
CHARSET, PIXEL_DATA = 0x00080005, 0x7FE00010
DATABASE_KEYS = (PATIENT_ID, STUDY_UID, SERIES_UID, SOP_UID)
UID_LEVELS = ((STUDY_UID, "Study"), (SERIES_UID, "Series"), (SOP_UID, "Instance"))
# RT Structure Set: ReferencedFrameOfReferenceSequence > RTReferencedStudySequence > ReferencedSOPInstanceUID
# names a study (Orthanc maps it as a StudyInstanceUID).
RT_FRAME_OF_REF_SEQ, RT_REF_STUDY_SEQ, REF_SOP_UID = 0x30060010, 0x30060012, 0x00081155

# Orthanc ErrorCode values (OrthancFramework Enumerations.h) of the refusals below; all answer 400.
BAD_REQUEST = (8, "Bad request")
BAD_FILE_FORMAT = (15, "Bad file format")
BAD_PARAMETER_TYPE = (5, "Bad type for a parameter")
OUT_OF_RANGE = (3, "Parameter out of range")
UNKNOWN_TAG = (27, "Unknown DICOM tag")

TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
INT_RANGES = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
              "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}
FLOAT_VRS = {"FL", "FD"}
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_HEX_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4})[,-]?([0-9A-Fa-f]{4})\)?$")
_DATA_URI = re.compile(r"^data:[^;,]*;base64,(.*)$", re.S)


class ModifyError(HubError):
    """A refused modify/anonymize request (HTTP 400) with Orthanc's error code and details."""

    def __init__(self, orthanc: tuple[int, str], details: str | None = None) -> None:
        super().__init__("bad_request", details or orthanc[1])
        self.orthanc_status, self.orthanc_error = orthanc
        self.details = details


def format_tag(tag: int) -> str:
    """Orthanc's ``DicomTag::Format``: ``gggg,eeee`` in lower-case hex."""
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def parse_tag(name: str) -> int:
    """Orthanc ``FromDcmtkBridge::ParseTag``: hex forms or a dictionary keyword."""
    m = _HEX_TAG.match(name.strip())
    if m:
        return int(m[1] + m[2], 16)
    tag = tag_for_keyword(name.strip())
    if tag is None:
        raise ModifyError(UNKNOWN_TAG, f"Unknown DICOM tag: {name}")
    return int(tag)


@dataclass(frozen=True)
class TagPath:
    """Orthanc ``DicomPath``: items ``(sequence tag, index or None for [*])`` then the final tag."""

    prefix: tuple[tuple[int, int | None], ...]
    tag: int


def parse_path(text: str) -> TagPath:
    tokens = text.split(".")
    prefix: list[tuple[int, int | None]] = []
    for token in tokens[:-1]:
        left, sep, right = token.partition("[")
        if not sep:
            raise ModifyError(OUT_OF_RANGE, "Parent path doesn't contain an index")
        right = right.strip()
        if not left.strip():
            raise ModifyError(OUT_OF_RANGE, "Parent path doesn't contain a tag")
        if not right.endswith("]"):
            raise ModifyError(OUT_OF_RANGE, "Parent path doesn't contain the end of the index")
        index = right[:-1].strip()
        if index != "*" and not is_digits(index):
            raise ModifyError(OUT_OF_RANGE, f"Not a valid index in parent path: [{right}")
        prefix.append((parse_tag(left), None if index == "*" else int(index)))
    return TagPath(tuple(prefix), parse_tag(tokens[-1]))






def vr_for(tag: int, ds: Dataset, creator: str) -> str:
    if tag in ds:
        return str(ds[tag].VR)
    element = tag & 0xFFFF
    if element == 0:
        return "UL"
    if tag >> 16 & 1:
        if 0x10 <= element <= 0xFF:
            return "LO"
        owner = ds.get((tag & 0xFFFF0000) | (element >> 8))
        try:
            return str(private_dictionary_VR(tag, str(owner.value) if owner is not None else creator))
        except KeyError:
            return "UN"
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    if vr == "US or SS":
        return "SS" if ds.get("PixelRepresentation") == 1 else "US"
    if "or" in vr:
        return "OW" if vr.startswith("OB") and (ds.get("BitsAllocated") or 0) > 8 else vr.split(" or ")[0]
    return vr


def make_element(tag: int, value: Any, ds: Dataset, creator: str) -> DataElement:
    """Orthanc ``FromDcmtkBridge::FromJson``: a string (``data:...;base64,`` decoded), null for an
    empty value, or for a sequence a list of ``{tag: value}`` objects."""
    if tag == PIXEL_DATA:
        raise ModifyError(BAD_REQUEST, "PixelData cannot be replaced")
    vr = vr_for(tag, ds, creator)
    if value is None:
        return new_element(tag, vr, empty_value(vr))
    if vr == "SQ":
        if isinstance(value, str):
            raise _out_of_range(tag, value)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ModifyError(BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {format_tag(tag)}")
        items = []
        for obj in value:
            item = Dataset()
            for name in sorted(obj):
                sub = parse_tag(name)
                item[sub] = make_element(sub, obj[name], item, creator)
            items.append(item)
        return new_element(tag, vr, Sequence(items))
    if not isinstance(value, str):
        raise ModifyError(BAD_PARAMETER_TYPE, f"Bad Parameter type for tag {format_tag(tag)}")
    m = _DATA_URI.match(value)
    raw = base64.b64decode(m[1], validate=False) if m else None
    try:
        if vr in BINARY_VRS:
            data = raw if raw is not None else value.encode("latin-1", "replace")
            return new_element(tag, vr, data + b"\0" * (len(data) % 2))
        text = raw.decode("utf-8", "replace") if raw is not None else value
        if vr in INT_RANGES:
            lo, hi = INT_RANGES[vr]
            ints = [int(v) for v in text.split("\\")]
            if any(not lo <= v <= hi for v in ints):
                raise ValueError(text)
            return new_element(tag, vr, ints[0] if len(ints) == 1 else ints)
        if vr in FLOAT_VRS:
            floats = [float(v) for v in text.split("\\")]
            return new_element(tag, vr, floats[0] if len(floats) == 1 else floats)
        if vr == "AT":
            tags = [parse_tag(v) for v in text.split("\\")]
            return new_element(tag, vr, tags[0] if len(tags) == 1 else tags)
        return new_element(tag, vr, text)
    except (ValueError, OverflowError):
        raise _out_of_range(tag, value) from None


def new_element(tag: int, vr: str, value: Any) -> DataElement:  # noqa: ANN401 - any element value
    """No value check warnings: pydicom would quote the value in the logs (patient data)."""
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def empty_value(vr: str) -> Any:
    return Sequence() if vr == "SQ" else "" if vr in TEXT_VRS else None


def _out_of_range(tag: int, value: str) -> ModifyError:
    return ModifyError(BAD_FILE_FORMAT, f'While creating a DICOM instance, tag ({format_tag(tag)}) '
                                        f'has out-of-range value: "{value}"')


def text_of(ds: Dataset, tag: int) -> str:
    elem = ds.get(tag)
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def set_text(ds: Dataset, tag: int, vr: str, value: str) -> None:
    ds[tag] = new_element(tag, vr, value)
