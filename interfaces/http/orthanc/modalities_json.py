"""Orthanc's JSON around remote modalities: the ``PUT /modalities/{name}`` body and the
``/configuration`` answer (``RemoteModalityParameters``), C-FIND queries as Orthanc's SCU builds
them (``DicomControlUserConnection::Find``) and answers in Orthanc's DICOM JSON formats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flask import request
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from hub.errors import HubError
from hub.services.modalities import OBSOLETE_MANUFACTURERS, RemoteModality
from mappings.ascii import is_digits

# Orthanc levels (``StringToResourceType``: case-insensitive, "Image" is the instance level) and
# their DICOM Query/Retrieve Level (PS3.4 C.6).
LEVELS = {"patient": "Patient", "study": "Study", "series": "Series", "instance": "Instance", "image": "Instance"}
QR_LEVEL = {"Patient": "PATIENT", "Study": "STUDY", "Series": "SERIES", "Instance": "IMAGE"}
FROM_QR_LEVEL = {v: k for k, v in QR_LEVEL.items()}
# Keys of a C-MOVE identifier per level (Orthanc ``DicomControlUserConnection::Move``).
MOVE_KEYS = {
    "Patient": ("PatientID",),
    "Study": ("StudyInstanceUID",),
    "Series": ("StudyInstanceUID", "SeriesInstanceUID"),
    "Instance": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}
# Identifiers a retrieve job keeps of each answer (Orthanc ``DicomMoveScuJob::AddFindAnswer``).
RETRIEVE_KEYS = ("QueryRetrieveLevel", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                 "AccessionNumber")


def level(value: Any) -> str:  # noqa: ANN401 - JSON value
    """Orthanc level name of ``value``; 400 when it is none."""
    found = LEVELS.get(value.strip().lower()) if isinstance(value, str) else None
    if found is None:
        raise HubError("bad_request", f"Parameter out of range: unknown level {value!r}")
    return found


# --------------------------------------------------------------------------- request helpers


def json_body(message: str = "Must provide a JSON value", *, empty: Any = None) -> Any:  # noqa: ANN401
    """The request body as JSON; ``empty`` for an empty body when given, else 400 with ``message``."""
    data = request.get_data()
    if not data.strip() and empty is not None:
        return empty
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise HubError("bad_request", message) from None


def flag(name: str) -> bool:
    """Orthanc 1.10 GET flags (``expand``, ``simplify``, ``short``): present means on."""
    return name in request.args


def dicom_format() -> str:
    """``full`` (default), ``short`` or ``simplify`` (Orthanc ``GetDicomFormat``)."""
    if flag("simplify"):
        return "simplify"
    if flag("short"):
        return "short"
    return "full"


def _string(body: Mapping[str, Any], key: str, default: str | None = None) -> str:
    if key not in body:
        if default is None:
            raise HubError("bad_request", f"String value expected in field: {key}")
        return default
    value = body[key]
    if not isinstance(value, str):
        raise HubError("bad_request", f"String value expected in field: {key}")
    return value


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise HubError("bad_request", f"Boolean value expected in field: {key}")
    return value


def unsigned(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HubError("bad_request", f"Unsigned integer value expected in field: {key}")
    return value


def _port(value: Any) -> int:  # noqa: ANN401
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and is_digits(value.strip().lstrip("-")):
        return int(value)
    raise HubError("bad_request", "Bad file format: the port must be an integer")


# --------------------------------------------------------------------------- modalities


def modality_from_orthanc(name: str, body: Any) -> RemoteModality:  # noqa: ANN401
    """``RemoteModalityParameters::Unserialize``: ``["AET", "host", port(, "Manufacturer")]`` or an
    object with ``AET``, ``Host``, ``Port`` and the optional fields; unknown fields are ignored."""
    if isinstance(body, list):
        if len(body) not in (3, 4) or not all(isinstance(v, str) for i, v in enumerate(body) if i != 2):
            raise HubError("bad_request", "Bad file format: expected [AET, Host, Port(, Manufacturer)]")
        manufacturer = _manufacturer(body[3] if len(body) == 4 else "Generic")
        return RemoteModality(name, body[0], body[1], _port(body[2]), manufacturer=manufacturer).validate()
    if not isinstance(body, dict):
        raise HubError("bad_request", "Bad file format: expected a JSON object or array")
    if "Port" not in body:
        raise HubError("bad_request", "Bad file format: missing field Port")
    n_action = _bool(body, "AllowNAction", True)
    event_report = _bool(body, "AllowEventReport", True)
    if "AllowStorageCommitment" in body:
        n_action = event_report = _bool(body, "AllowStorageCommitment", True)
    return RemoteModality(
        name=name,
        aet=_string(body, "AET"),
        host=_string(body, "Host"),
        port=_port(body["Port"]),
        allow_echo=_bool(body, "AllowEcho", True),
        allow_find=_bool(body, "AllowFind", True),
        allow_move=_bool(body, "AllowMove", True),
        allow_get=_bool(body, "AllowGet", True),
        allow_store=_bool(body, "AllowStore", True),
        manufacturer=_manufacturer(_string(body, "Manufacturer", "Generic")),
        allow_find_worklist=_bool(body, "AllowFindWorklist", True),
        allow_n_action=n_action,
        allow_event_report=event_report,
        allow_transcoding=_bool(body, "AllowTranscoding", True),
        local_aet=_string(body, "LocalAet", ""),
        timeout=unsigned(body, "Timeout", 0),
        use_dicom_tls=_bool(body, "UseDicomTls", False),
    ).validate()


def _manufacturer(value: str) -> str:
    return OBSOLETE_MANUFACTURERS.get(value, value)


def modality_to_orthanc(m: RemoteModality) -> dict[str, Any]:
    """``RemoteModalityParameters::Serialize`` in its advanced (object) form, keys in Orthanc's order."""
    return {
        "AET": m.aet,
        "AllowEcho": m.allow_echo,
        "AllowEventReport": m.allow_event_report,
        "AllowFind": m.allow_find,
        "AllowFindWorklist": m.allow_find_worklist,
        "AllowGet": m.allow_get,
        "AllowMove": m.allow_move,
        "AllowNAction": m.allow_n_action,
        "AllowStore": m.allow_store,
        "AllowTranscoding": m.allow_transcoding,
        "Host": m.host,
        "LocalAet": m.local_aet,
        "Manufacturer": m.manufacturer,
        "Port": m.port,
        "Timeout": m.timeout,
        "UseDicomTls": m.use_dicom_tls,
    }


# --------------------------------------------------------------------------- tags and formats


def tag_of(key: str) -> int | None:
    """Tag of a keyword or of ``gggg,eeee`` / ``ggggeeee`` (Orthanc ``FromDcmtkBridge::ParseTag``)."""
    text = key.strip()
    hexa = text.replace(",", "").replace("-", "")
    if len(hexa) == 8 and len(text) in (8, 9) and all(c in "0123456789abcdefABCDEF" for c in hexa):
        return int(hexa, 16)
    return tag_for_keyword(text)


def keyword_of(key: str) -> str:
    """The keyword for a tag key; 400 for a tag pydicom's dictionary does not name."""
    tag = tag_of(key)
    keyword = keyword_for_tag(tag) if tag is not None else ""
    if not keyword:
        raise HubError("bad_request", f"Associative array of DICOM tags to strings expected: unknown tag {key!r}")
    return keyword


def tags_map(value: Any, field: str) -> dict[str, str]:  # noqa: ANN401
    """``SerializationToolbox::ReadMapOfTags``: ``{tag: string}`` -> ``{keyword: string}``."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise HubError("bad_request", f"Associative array of DICOM tags to strings expected in field: {field}")
    return {keyword_of(k): v for k, v in value.items()}


def _format_tag(tag: int) -> str:
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


def dataset_json(values: Mapping[str, str], fmt: str) -> dict[str, Any]:
    """A ``{keyword or GGGGEEEE: string}`` map in Orthanc's ``full``, ``short`` or ``simplify``
    DICOM JSON (``FromDcmtkBridge::ToJson`` of a ``DicomMap``), sorted by tag."""
    items = []
    for key, value in values.items():
        tag = tag_of(key)
        if tag is None:
            continue
        items.append((tag, keyword_for_tag(tag) or key, value))
    items.sort()
    if fmt == "short":
        return {_format_tag(t): v for t, _, v in items}
    if fmt == "simplify":
        return {name: v for _, name, v in items}
    return {_format_tag(t): {"Name": name, "Type": "String", "Value": v} for t, name, v in items}


# --------------------------------------------------------------------------- C-FIND as Orthanc's SCU


def _keywords(*tags: int) -> frozenset[str]:
    return frozenset(k for k in (keyword_for_tag(t) for t in tags) if k)


# Orthanc ``DicomTag::AddTagsForModule`` (PS3.3 Patient, General Study, General Series, SOP Common).
_PATIENT = _keywords(0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00081120, 0x00100032, 0x00101000,
                     0x00101002, 0x00101001, 0x00102160, 0x00104000, 0x00102201, 0x00102202, 0x00102292,
                     0x00102293, 0x00102294, 0x00102297, 0x00102298, 0x00102299, 0x00120062, 0x00120063,
                     0x00120064, 0x00100021, 0x00100024)
_STUDY = _keywords(0x0020000D, 0x00080020, 0x00080030, 0x00080090, 0x00080096, 0x00200010, 0x00080050,
                   0x00080051, 0x00081030, 0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00321034,
                   0x00081110, 0x00081032, 0x00401012)
_SERIES = _keywords(0x00080060, 0x0020000E, 0x00200011, 0x00200060, 0x00080021, 0x00080031, 0x00081050,
                    0x00081052, 0x00181030, 0x0008103E, 0x0008103F, 0x00081070, 0x00081072, 0x00081111,
                    0x00081250, 0x00180015, 0x00185100, 0x00280108, 0x00290109, 0x00400275, 0x00102210,
                    0x00400253, 0x00400244, 0x00400245, 0x00400254, 0x00400260, 0x00400280)
_INSTANCE = _keywords(0x00080016, 0x00080018, 0x00080005, 0x00080012, 0x00080013, 0x00080014, 0x0008001A,
                      0x0008001B, 0x00080110, 0x00080201, 0x0018A001, 0x00200013, 0x01000410, 0x01000420,
                      0x01000424, 0x01000426, 0x04000500, 0x04000561, 0x0040A390, 0x00280303, 0x4FFE0001,
                      0xFFFAFFFA)
ALLOWED = {
    "Patient": _PATIENT | {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                           "NumberOfPatientRelatedInstances"},
    "Study": _PATIENT | _STUDY | {"ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
                                  "SOPClassesInStudy"},
    "Series": _PATIENT | _STUDY | _SERIES | {"NumberOfSeriesRelatedInstances"},
    "Instance": _PATIENT | _STUDY | _SERIES | _INSTANCE,
}
# Return keys Orthanc's SCU adds when missing, per level (deepest first).
_LEVEL_KEYS = {
    "Patient": ("PatientID",),
    "Study": ("AccessionNumber", "StudyInstanceUID", "PatientID"),
    "Series": ("SeriesInstanceUID", "AccessionNumber", "StudyInstanceUID", "PatientID"),
    "Instance": ("SOPInstanceUID", "SeriesInstanceUID", "AccessionNumber", "StudyInstanceUID", "PatientID"),
}


def find_identifier(lvl: str, query: Mapping[str, str], *, normalize: bool, manufacturer: str) -> dict[str, str]:
    """The C-FIND identifier Orthanc's SCU sends for ``query`` at level ``lvl``: with ``normalize``
    only the keys of the level and the levels above (``NormalizeFindQuery``) and the manufacturer's
    wildcard fixes (``ConvertQueryFields``); then the level's identifiers as return keys (universal
    value ``*`` for GE, empty otherwise)."""
    keys = dict(query)
    if normalize:
        allowed = ALLOWED[lvl] | {"SpecificCharacterSet"}
        keys = {k: v for k, v in keys.items() if k in allowed}
        if manufacturer == "GenericNoUniversalWildcard":
            keys = {k: "" if v == "*" else v for k, v in keys.items()}
        elif manufacturer == "GenericNoWildcardInDates":
            keys = {k: "" if v == "*" and dictionary_VR(k) == "DA" else v for k, v in keys.items()}
    universal = "*" if manufacturer == "GE" else ""
    for key in _LEVEL_KEYS[lvl]:
        keys.setdefault(key, universal)
    return keys
