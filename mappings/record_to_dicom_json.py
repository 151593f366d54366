"""Query result records -> DICOM JSON (PS3.18 F.2) for QIDO-RS responses (PS3.18 10.6.3).

A record (from :meth:`hub.services.query.QueryService.find`) holds ``tags`` (keyword -> Orthanc-style
string, ``\\`` between values), ``computed`` (keyword -> value) and, at the instance level,
``metadata`` (the instance's stored DICOM JSON). Values are typed by the data dictionary's VR:
PN as ``{"Alphabetic": ...}`` objects, IS/DS and binary numbers as JSON numbers, the rest as strings;
an attribute without a value is written with its VR only (F.2.5).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

INT_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
FLOAT_VRS = frozenset({"DS", "FL", "FD"})
RETRIEVE_URL = "00081190"


@lru_cache(maxsize=4096)
def keyword_tag_vr(keyword: str) -> tuple[str, str] | None:
    """(8-hex tag, VR) of a dictionary keyword; ``None`` when unknown."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        vr = dictionary_VR(tag)
    except (KeyError, ValueError):
        return None
    return f"{tag:08X}", vr.split(" or ")[0]


def _number(text: str, vr: str) -> int | float | None:
    try:
        if vr in INT_VRS:
            return int(text)
        value = float(text)
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    except ValueError:
        return None


def _person_name(text: str) -> dict[str, str]:
    groups = text.split("=")
    out = {}
    for key, value in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if value:
            out[key] = value
    return out


def value_to_dicom_json(value: Any, vr: str) -> dict[str, Any]:
    """One element's DICOM JSON from a record value (string with ``\\`` separators, number or list)."""
    if vr == "SQ":
        return {"vr": vr}
    if value is None or value == "" or value == []:
        return {"vr": vr}
    items = value if isinstance(value, (list, tuple)) else str(value).split("\\")
    out: list[Any] = []
    for item in items:
        text = str(item).strip() if vr != "PN" else str(item)
        if vr == "PN":
            out.append(_person_name(text) if text else None)
        elif vr in INT_VRS or vr in FLOAT_VRS:
            out.append(_number(text, vr) if text else None)
        else:
            out.append(text if text else None)
    if all(v is None for v in out):
        return {"vr": vr}
    return {"vr": vr, "Value": out}


def record_to_dicom_json(record: dict[str, Any], keywords: list[str], retrieve_url: str | None = None,
                         *, all_metadata: bool = False) -> dict[str, Any]:
    """The QIDO-RS result object of one match: ``keywords`` (computed keys, then the instance metadata,
    then the index's tags), plus RetrieveURL (0008,1190). ``all_metadata`` adds every element of the
    instance metadata (``includefield=all`` at the instance level), bulk data references dropped."""
    tags: dict[str, str] = record.get("tags", {})
    computed: dict[str, Any] = record.get("computed", {})
    metadata: dict[str, Any] | None = record.get("metadata")
    out: dict[str, Any] = {}
    if all_metadata and metadata:
        for tag, elem in metadata.items():
            if "BulkDataURI" not in elem and "InlineBinary" not in elem:
                out[tag] = elem
    for keyword in keywords:
        key = keyword_tag_vr(keyword)
        if key is None:
            continue
        tag, vr = key
        if keyword in computed:
            out[tag] = value_to_dicom_json(computed[keyword], vr)
        elif metadata is not None and tag in metadata:
            elem = metadata[tag]
            out[tag] = {"vr": elem.get("vr", vr)} if "BulkDataURI" in elem else elem
        elif tag not in out:
            out[tag] = value_to_dicom_json(tags.get(keyword), vr)
    if retrieve_url:
        out[RETRIEVE_URL] = {"vr": "UR", "Value": [retrieve_url]}
    return dict(sorted(out.items()))
