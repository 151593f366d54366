"""DICOM values -> FHIR R4 datatypes and codes, shared by the archive/order -> FHIR mappings.

DA/TM (PS3.5 6.2) -> date/dateTime (R4 datatypes.html; a time without offset is in the hub's zone,
mapping-reference 3.2); PN (PS3.5 6.2.1) -> HumanName; Patient ID + Issuer of Patient ID (Qualifiers
Sequence, PS3.3 C.7.1.1) -> Identifier (mapping-reference 3.3); Modality -> DICOM ontology coding (CID 29);
Body Part Examined -> SNOMED CT (PS3.16 Annex L); Laterality -> SNOMED CT (CID 244); Patient's Sex ->
AdministrativeGender. Values are read from DICOM JSON (PS3.18 F.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, tzinfo
from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SNOMED = "http://snomed.info/sct"
# Patient's Sex (0010,0040) -> AdministrativeGender (mapping-reference 3.3); other values: unknown.
GENDER = {"M": "male", "F": "female", "O": "other"}
# Body Part Examined (0018,0015) -> SNOMED CT (PS3.16 Annex L), the common ones.
BODY_PART = {"CHEST": ("51185008", "Thorax"), "HEAD": ("69536005", "Head"), "ABDOMEN": ("818983003", "Abdomen"),
             "PELVIS": ("816092008", "Pelvis"), "BRAIN": ("12738006", "Brain"), "NECK": ("45048000", "Neck"),
             "SPINE": ("421060004", "Spine"), "CSPINE": ("122494005", "Cervical spine"),
             "TSPINE": ("122495006", "Thoracic spine"), "LSPINE": ("122496007", "Lumbar spine"),
             "KNEE": ("72696002", "Knee"), "SHOULDER": ("16982005", "Shoulder"), "HAND": ("85562004", "Hand"),
             "FOOT": ("56459004", "Foot"), "BREAST": ("76752008", "Breast"), "HEART": ("80891009", "Heart"),
             "ANKLE": ("344001", "Ankle"), "HIP": ("29836001", "Hip"), "ELBOW": ("127949000", "Elbow"),
             "WRIST": ("74670003", "Wrist"), "EXTREMITY": ("66019005", "Extremity"),
             "CHESTABDOMEN": ("416550000", "Chest and abdomen"), "ABDOMENPELVIS": ("818981001", "Abdomen and pelvis")}
# Laterality (0020,0060) / Image Laterality (0020,0062) -> SNOMED CT (CID 244, mapping-reference 3.1); U: none.
LATERALITY = {"L": ("7771000", "Left"), "R": ("24028007", "Right"), "B": ("51440002", "Right and left")}

Row = Mapping[str, Any]
Json = dict[str, Any]


def dicom_datetime(da: str | None, tm: str | None, tz: tzinfo | None) -> str | None:
    """DA + TM (PS3.5 6.2) -> FHIR dateTime. A time without offset is in the hub's zone ``tz``
    (``None``: the system's local zone, with its DST rule for that day) - mapping-reference 3.2 decision."""
    da = (da or "").strip()
    if len(da) != 8 or not da.isdigit():
        return None
    try:
        day = date(int(da[:4]), int(da[4:6]), int(da[6:]))
    except ValueError:
        return None
    tm = (tm or "").strip().replace(":", "")
    whole, _, frac = tm.partition(".")
    if not whole.isdigit() or len(whole) < 2:
        return day.isoformat()
    try:
        micro = int((frac + "000000")[:6]) if frac.isdigit() else 0
        local = datetime.combine(day, time(int(whole[:2]), int(whole[2:4] or 0), min(int(whole[4:6] or 0), 59), micro))
    except ValueError:
        return day.isoformat()
    aware = local.replace(tzinfo=tz) if tz is not None else local.astimezone()
    return aware.isoformat(timespec="milliseconds" if micro else "seconds")


def dicom_date(da: str | None) -> str | None:
    da = (da or "").strip()
    if len(da) == 8 and da.isdigit():
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    if len(da) == 4 and da.isdigit():
        return da
    return None


def first_text(attrs: Row, tag: str) -> str:
    value = (attrs.get(tag) or {}).get("Value") or [""]
    first = value[0]
    if isinstance(first, dict):
        return str(first.get("Alphabetic", ""))
    return str(first)


def seq_items(attrs: Row, tag: str) -> list[Row]:
    return [v for v in (attrs.get(tag) or {}).get("Value") or [] if isinstance(v, dict)]


def human_name(pn: str) -> Json | None:
    """PN ``family^given^middle^prefix^suffix`` (PS3.5 6.2.1) -> HumanName (use official)."""
    alphabetic = (pn or "").split("=")[0]
    if not alphabetic.strip("^ "):
        return None
    parts = (alphabetic.split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = (p.strip() for p in parts)
    name: Json = {"use": "official", "text": " ".join(p for p in (prefix, given, middle, family, suffix) if p)}
    if family:
        name["family"] = family
    givens = [g for g in (given, *middle.split(" ")) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name


def dcm_coding(code: str) -> Json:
    return {"system": DCM, "code": code}


def issuer_system(issuer: str, qualifiers: list[Row]) -> str | None:
    """Identifier.system of a Patient ID: the ISO OID / URI of the Issuer of Patient ID Qualifiers
    (0010,0024) as ``urn:oid:``; a local namespace alone has no URI (the issuer goes to assigner)."""
    for q in qualifiers:
        uid, kind = first_text(q, "00400032"), first_text(q, "00400033")
        if uid and kind == "ISO":
            return f"urn:oid:{uid}"
        if uid and kind in ("URI", "URL"):
            return uid
    return None


def patient_identifier(patient_id: str, issuer: str, qualifiers: list[Row], *, use: str = "usual") -> Json:
    ident: Json = {"use": use, "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}
    system = issuer_system(issuer, qualifiers)
    if system:
        ident["system"] = system
    ident["value"] = patient_id
    if issuer:
        ident["assigner"] = {"display": issuer}
    return ident
