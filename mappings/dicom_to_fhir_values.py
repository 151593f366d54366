"""DICOM values -> FHIR R4 datatypes and codes, shared by the archive/order -> FHIR mappings.

DA/TM (PS3.5 6.2) -> date/dateTime (R4 datatypes.html; a time without offset is in the hub's zone,
mapping-reference 3.2); PN (PS3.5 6.2.1) -> HumanName; Patient ID + Issuer of Patient ID (Qualifiers
Sequence, PS3.3 C.7.1.1) -> Identifier (mapping-reference 3.3); Modality -> DICOM ontology coding (CID 29);
Body Part Examined -> SNOMED CT (PS3.16 Annex L); Laterality -> SNOMED CT (CID 244); Patient's Sex ->
AdministrativeGender. Values are read from DICOM JSON (PS3.18 F.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

from mappings.ascii import is_digits

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


def utc_offset(value: str | None) -> tzinfo | None:
    """``&ZZXX`` (Timezone Offset From UTC (0008,0201), or the tail of a DT, PS3.5 6.2) -> tzinfo; None when
    absent or not a valid offset (-12:00 .. +14:00)."""
    text = (value or "").strip()
    if len(text) != 5 or text[0] not in "+-" or not is_digits(text[1:]):
        return None
    hours, minutes = int(text[1:3]), int(text[3:])
    delta = timedelta(hours=hours, minutes=minutes) * (-1 if text[0] == "-" else 1)
    if minutes >= 60 or not timedelta(hours=-12) <= delta <= timedelta(hours=14):
        return None
    return timezone(delta)


def dicom_instant(da: str | None, tm: str | None, offset: str | None, tz: tzinfo | None) -> datetime | None:
    """DA + TM (PS3.5 6.2) as an aware moment, or None without a usable date and time. The zone, per PS3.3
    C.12.1.1.8: an offset carried by the value itself (a DT-style ``&ZZXX`` tail on ``tm``) wins, else
    Timezone Offset From UTC (0008,0201) ``offset``, else the hub's zone ``tz`` (``None``: the system's local
    zone with its DST rule for that day) - mapping-reference 3.2 decision."""
    da = (da or "").strip()
    if len(da) != 8 or not is_digits(da):
        return None
    tm = (tm or "").strip().replace(":", "")
    own = utc_offset(tm[-5:]) if len(tm) > 5 and tm[-5] in "+-" else None
    if own is not None:
        tm = tm[:-5]
    whole, _, frac = tm.partition(".")
    if not is_digits(whole) or len(whole) < 2:
        return None
    try:
        micro = int((frac + "000000")[:6]) if is_digits(frac) else 0
        local = datetime(int(da[:4]), int(da[4:6]), int(da[6:]), int(whole[:2]), int(whole[2:4] or 0),
                         min(int(whole[4:6] or 0), 59), micro)
    except ValueError:
        return None
    zone = own or utc_offset(offset) or tz
    return local.replace(tzinfo=zone) if zone is not None else local.astimezone()


def dicom_utc(da: str | None, tm: str | None, offset: str | None, tz: tzinfo | None = None) -> datetime | None:
    """The instant of DA + TM as naive UTC, as the index keeps it for the FHIR ``started`` search and sort
    (R4 search.html#date compares instants). The zone as in :func:`dicom_instant`; a date without a usable
    time has no zone of its own and stands for midnight in the hub's zone ``tz`` (None: the system's).
    None without a usable date."""
    moment = dicom_instant(da, tm, offset, tz) or dicom_instant(da, "000000", None, tz)
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # 0001-01-01 east of UTC
        return None


def dicom_datetime(da: str | None, tm: str | None, tz: tzinfo | None, offset: str | None = None) -> str | None:
    """DA + TM (PS3.5 6.2) -> FHIR dateTime (R4 datatypes.html: a time needs a zone); the zone as in
    :func:`dicom_instant`; a date without (usable) time stays a date."""
    day = dicom_date(da)
    if day is None or len(day) != 10:
        return None
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    aware = dicom_instant(da, tm, offset, tz)
    if aware is None:
        return day
    return aware.isoformat(timespec="milliseconds" if aware.microsecond else "seconds")


def offset_of(attrs: Row) -> str:
    """Timezone Offset From UTC (0008,0201) of a DICOM JSON object, ``""`` when absent."""
    return first_text(attrs, "00080201").strip()


def dicom_date(da: str | None) -> str | None:
    """DA (PS3.5 6.2) -> FHIR date; None for what is no calendar date (``00000000``, a placeholder some
    systems send for "unknown", or ``19801301``): R4's date has no year 0, month 13 or day 0."""
    da = (da or "").strip()
    if len(da) == 8 and is_digits(da):
        try:
            return date(int(da[:4]), int(da[4:6]), int(da[6:])).isoformat()
        except ValueError:
            return None
    if len(da) == 4 and is_digits(da) and da != "0000":
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
    return next((system for q in qualifiers if (system := _universal_system(q))), None)


def _universal_system(item: Row) -> str:
    """Universal Entity ID (0040,0032) as a system by its type (0040,0033): ISO as ``urn:oid:``, URI/URL as is."""
    uid, kind = first_text(item, "00400032"), first_text(item, "00400033")
    if uid and kind == "ISO":
        return f"urn:oid:{uid}"
    return uid if uid and kind in ("URI", "URL") else ""


def entity_system(items: list[Row]) -> str:
    """Identifier.system of an HL7v2 Hierarchic Designator macro item (PS3.3 10.14: Issuer of Accession Number
    Sequence (0008,0051) and the like): the Universal Entity ID (0040,0032) of type ISO as ``urn:oid:``, of type
    URI/URL as is, else a Local Namespace Entity ID (0040,0031) that is itself a URI (how a FHIR order stores
    its system, mappings.fhir_values.issuer_item); ``""`` when none says one."""
    for item in items:
        namespace = first_text(item, "00400031")
        system = _universal_system(item) or (namespace if ":" in namespace else "")
        if system:
            return system
    return ""


def patient_identifier(patient_id: str, issuer: str, qualifiers: list[Row], *, use: str = "usual") -> Json:
    ident: Json = {"use": use, "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}
    system = issuer_system(issuer, qualifiers)
    if system:
        ident["system"] = system
    ident["value"] = patient_id
    if issuer:
        ident["assigner"] = {"display": issuer}
    return ident
