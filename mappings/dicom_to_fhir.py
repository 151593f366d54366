"""Archive rows and orders -> FHIR R4 ImagingStudy, Patient and Endpoint (JSON dicts).

Pure functions (no database, no HTTP). Element choices follow mapping-reference 3.1/3.2 and the R4
ImagingStudy DICOM mapping: the Study Instance UID is an identifier ``urn:dicom:uid`` /
``urn:oid:<uid>``, series and instance UIDs are bare ids, modalities are codings of the DICOM
ontology (``http://dicom.nema.org/resources/ontology/DCM``, CID 29), SOP classes are
``urn:ietf:rfc:3986`` / ``urn:oid:<uid>``. The status follows mapping-reference 2.4: stored images
-> ``available``; an order without images -> ``registered``, or ``cancelled`` once cancelled or
discontinued.

Identifiers of the resources (a decision, documented in the HTTP layer's CapabilityStatement):
ImagingStudy id = Orthanc study public id for a stored study, ``o-<order pk>`` for an order without
images; Patient id = Orthanc patient public id (SHA-1 of PatientID) for a stored patient, SHA-1 of
``PatientID|Issuer`` (same format) for a patient known from orders only.

Value conversions (DA/TM, PN, Patient ID + issuer, code tables) are in ``mappings.dicom_to_fhir_values``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from pydicom.uid import UID

from hub.domain.ids import orthanc_id
from mappings.dicom_to_fhir_values import (
    BODY_PART,
    DCM,
    GENDER,
    LATERALITY,
    SNOMED,
    V2_0203,
    Json,
    Row,
    dcm_coding,
    dicom_date,
    dicom_datetime,
    entity_system,
    first_text,
    human_name,
    offset_of,
    patient_identifier,
    seq_items,
)

DICOM_UID = "urn:dicom:uid"
RFC3986 = "urn:ietf:rfc:3986"
CONNECTION_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
ENDPOINT_ID = "dicomweb-wado-rs"
CANCELLED_ORDER_STATES = frozenset({"CA", "DC", "OC", "OD"})  # HL7 table 0038 (+ ORC-1 codes)
FINAL_CANCELLED_STEPS = frozenset({"CANCELED", "DISCONTINUED"})
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# DICOM keyword -> tag, for instance values read from the stored DICOM JSON (PS3.18 F.2)
_TAGS = {"Laterality": "00200060", "ImageLaterality": "00200062", "ContentLabel": "00700080",
         "DocumentTitle": "00420010", "ImageType": "00080008", "OperatorsName": "00081070",
         "PerformingPhysicianName": "00081050"}


# --------------------------------------------------------------------------- resource ids, versions
def patient_resource_id(patient_id: str, issuer: str = "", *, archived: bool = True) -> str:
    """Patient id: Orthanc's public id when the archive has the patient, else SHA-1 of ``id|issuer``."""
    return orthanc_id(patient_id) if archived else orthanc_id(patient_id, issuer)


def order_study_id(order_pk: int) -> str:
    return f"o-{order_pk}"


def version_of(updated_at: datetime) -> str:
    """versionId derived from the row's last change (microseconds since the epoch, UTC)."""
    return str(int(updated_at.replace(tzinfo=UTC).timestamp() * 1_000_000))


def meta(updated_at: datetime) -> Json:
    instant = updated_at.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"versionId": version_of(updated_at), "lastUpdated": instant}


# --------------------------------------------------------------------------- Patient
def patient_from_attrs(resource_id: str, patient_id: str, issuer: str, attrs: Row, updated_at: datetime,
                       replaces: Sequence[str] = ()) -> Json:
    """Patient module as DICOM JSON (an order's patient attributes) -> Patient (mapping-reference 3.3);
    ``replaces``: ids of the identities merged into this one (ADT^A40), linked ``replaces`` (R4 Patient.link)."""
    out: Json = {"resourceType": "Patient", "id": resource_id, "meta": meta(updated_at)}
    idents = [patient_identifier(patient_id, issuer, seq_items(attrs, "00100024"))]
    for other in seq_items(attrs, "00101002"):
        pid, iss = first_text(other, "00100020"), first_text(other, "00100021")
        if pid and (pid, iss) != (patient_id, issuer):
            ident = patient_identifier(pid, iss, seq_items(other, "00100024"), use="secondary")
            del ident["type"]
            idents.append(ident)
    out["identifier"] = idents
    out["active"] = True
    name = human_name(first_text(attrs, "00100010"))
    if name:
        out["name"] = [name]
    sex = first_text(attrs, "00100040").strip().upper()
    out["gender"] = GENDER.get(sex, "unknown") if sex else "unknown"
    birth = dicom_date(first_text(attrs, "00100030"))
    if birth:
        out["birthDate"] = birth
    if replaces:
        out["link"] = [{"other": {"reference": f"Patient/{rid}"}, "type": "replaces"} for rid in replaces]
    return out


def archive_patient_to_patient(row: Row, issuer: str = "", order_attrs: Row | None = None,
                               replaces: Sequence[str] = ()) -> Json:
    """An archive ``patients`` row (Orthanc MainDicomTags) -> Patient; the order's patient module,
    when there is one, adds identifiers (issuer, other IDs). Demographics are the archive's (ADT
    updates both)."""
    attrs: dict[str, Any] = dict(order_attrs or {})
    attrs["00100010"] = {"vr": "PN", "Value": [{"Alphabetic": row.get("patient_name") or ""}]}
    attrs["00100030"] = {"vr": "DA", "Value": [row.get("birth_date") or ""]}
    attrs["00100040"] = {"vr": "CS", "Value": [row.get("sex") or ""]}
    return patient_from_attrs(str(row["public_id"]), str(row["patient_id"]), issuer, attrs, row["updated_at"],
                              replaces)


def merged_patient(resource_id: str, prior_id: str, prior_issuer: str, survivor_id: str, merged_at: datetime,
                   qualifiers: Sequence[Row] = ()) -> Json:
    """The identity retired by ADT^A40 (mapping-reference 1.5): inactive, ``link`` replaced-by the survivor
    (R4 Patient.link); ``qualifiers``: the issuer's (0010,0024) items, which give the identifier's system."""
    ident = patient_identifier(prior_id, prior_issuer, list(qualifiers), use="old")
    return {"resourceType": "Patient", "id": resource_id, "meta": meta(merged_at), "identifier": [ident],
            "active": False, "link": [{"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"}]}


# --------------------------------------------------------------------------- Endpoint
def dicomweb_endpoint(address: str, updated_at: datetime, resource_id: str = ENDPOINT_ID) -> Json:
    """The hub's DICOMweb service base (mapping-reference 3.2): WADO-RS connection type, base URL only."""
    return {"resourceType": "Endpoint", "id": resource_id, "meta": meta(updated_at), "status": "active",
            "connectionType": {"system": CONNECTION_TYPE, "code": "dicom-wado-rs"},
            "name": "rishub DICOMweb", "payloadType": [{"text": "DICOM WADO-RS"}],
            "payloadMimeType": ["application/dicom", "application/dicom+json", "multipart/related"],
            "address": address.rstrip("/")}


# --------------------------------------------------------------------------- ImagingStudy
def _accession_identifier(value: str, attrs: Row) -> Json:
    ident: Json = {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]}}
    system = entity_system(seq_items(attrs, "00080051"))
    if system:
        ident["system"] = system
    ident["value"] = value
    return ident


def _based_on(order: Row | None, accession: str, attrs: Row) -> list[Json]:
    """Accession (+ placer/filler of the order) as logical ServiceRequest references (R4 basedOn), each with
    the system its issuer gives (``attrs``: the order's; as on the order's ServiceRequest)."""
    refs: list[Json] = []
    if accession:
        refs.append({"type": "ServiceRequest", "identifier": _accession_identifier(accession, attrs)})
    if order is not None:
        for code, key, tag in (("PLAC", "placer_order", "00400026"), ("FILL", "filler_order", "00400027")):
            if order.get(key):
                ident: Json = {"type": {"coding": [{"system": V2_0203, "code": code}]}}
                system = entity_system(seq_items(attrs, tag))
                if system:
                    ident["system"] = system
                refs.append({"type": "ServiceRequest", "identifier": {**ident, "value": str(order[key])}})
    return refs


def _study_head(resource_id: str, status: str, study_uid: str, accession: str, attrs: Row,
                updated_at: datetime) -> Json:
    out: Json = {"resourceType": "ImagingStudy", "id": resource_id, "meta": meta(updated_at),
                 "identifier": [{"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}]}
    if accession:
        out["identifier"].append(_accession_identifier(accession, attrs))
    out["status"] = status
    return out


def _series_json(series: Row, instances: list[Row], endpoint_ref: str, tz: tzinfo | None, offset: str) -> Json:
    tags = json.loads(series.get("main_tags") or "{}")
    out: Json = {"uid": series["series_uid"]}
    if series.get("series_number") is not None:
        out["number"] = int(series["series_number"])
    out["modality"] = dcm_coding(series.get("modality") or "OT")
    if series.get("series_description"):
        out["description"] = series["series_description"]
    out["numberOfInstances"] = len(instances)
    out["endpoint"] = [{"reference": endpoint_ref}]
    body = BODY_PART.get((series.get("body_part_examined") or "").upper().replace(" ", ""))
    if body:
        out["bodySite"] = {"system": SNOMED, "code": body[0], "display": body[1]}
    inst_tags = [_instance_tags(i) for i in instances]
    laterality = _laterality(tags, inst_tags)
    if laterality:
        out["laterality"] = laterality
    started = dicom_datetime(series.get("series_date") or tags.get("SeriesDate"), series.get("series_time"), tz,
                             offset)
    if started:
        out["started"] = started
    performers = _performers(tags, inst_tags)
    if performers:
        out["performer"] = performers
    out["instance"] = []
    for inst, itags in zip(instances, inst_tags, strict=True):
        item: Json = {"uid": inst["sop_instance_uid"],
                      "sopClass": {"system": RFC3986, "code": f"urn:oid:{inst['sop_class_uid']}"}}
        if inst.get("instance_number") is not None:
            item["number"] = int(inst["instance_number"])
        title = _title(itags, str(inst["sop_class_uid"]))
        if title:
            item["title"] = title
        out["instance"].append(item)
    return out


def _instance_tags(inst: Row) -> dict[str, list[str]]:
    """The instance's values used below, by keyword: from its stored DICOM JSON (``metadata_json``) and/or its
    main tags (``main_tags``, Orthanc style: multiple values joined by ``\\``), when the row carries them.
    ``ConceptName`` is the Code Meaning of the Concept Name Code Sequence (0040,A043)."""
    out: dict[str, list[str]] = {}
    main = inst.get("main_tags")
    main = json.loads(main) if isinstance(main, str | bytes) else dict(main or {})
    for keyword, value in main.items():
        if isinstance(value, str) and value:
            out[keyword] = value.split("\\")
    meta = inst.get("metadata_json")
    meta = json.loads(meta) if isinstance(meta, str | bytes) else dict(meta or {})
    for keyword, tag in _TAGS.items():
        values = [str(v.get("Alphabetic", "") if isinstance(v, dict) else v)
                  for v in (meta.get(tag) or {}).get("Value") or []]
        if any(values):
            out[keyword] = values
    concept = seq_items(meta, "0040A043")
    if concept and first_text(concept[0], "00080104"):
        out["ConceptName"] = [first_text(concept[0], "00080104")]
    return out


def _laterality(series_tags: Row, inst_tags: list[dict[str, list[str]]]) -> Json | None:
    """series.laterality: Laterality (0020,0060) of the series, else the Image Laterality (0020,0062) its
    instances agree on (an instance without one does not disagree)."""
    code = str(series_tags.get("Laterality") or "").strip().upper()
    if not code:
        found = {(t.get("Laterality") or t.get("ImageLaterality") or [""])[0].strip().upper() for t in inst_tags} - {""}
        code = found.pop() if len(found) == 1 else ""
    known = LATERALITY.get(code)
    return {"system": SNOMED, "code": known[0], "display": known[1]} if known else None


def _performers(series_tags: Row, inst_tags: list[dict[str, list[str]]]) -> list[Json]:
    """series.performer: Performing Physician's Name (0008,1050) and Operators' Name (0008,1070) of the series
    (or of its instances) as display-only Practitioner references, function v3-ParticipationType PRF."""
    names: list[str] = []
    for keyword in ("PerformingPhysicianName", "OperatorsName"):
        value = series_tags.get(keyword)
        values = value.split("\\") if isinstance(value, str) and value else \
            [v for t in inst_tags for v in t.get(keyword, [])]
        for pn in values:
            name = human_name(pn)
            if name and name["text"] not in names:
                names.append(name["text"])
    function = {"coding": [{"system": PARTICIPATION, "code": "PRF", "display": "performer"}]}
    return [{"function": function, "actor": {"type": "Practitioner", "display": n}} for n in names]


def _title(tags: dict[str, list[str]], sop_class_uid: str) -> str | None:
    """instance.title: Content Label (0070,0080), Concept Name (0040,A043) meaning, Document Title (0042,0010),
    Image Type (0008,0008), else the name of the SOP Class (PS3.6 Annex A) when the UID is a known one."""
    for keyword in ("ContentLabel", "ConceptName", "DocumentTitle", "ImageType"):
        values = [v.strip() for v in tags.get(keyword, []) if v.strip()]
        if values:
            return "\\".join(values)
    name = UID(sop_class_uid).name
    return name if name != sop_class_uid else None


def archive_study_to_imaging_study(study: Row, patient_ref: str, series: list[Row],
                                   instances: Mapping[int, list[Row]], order: Row | None, tz: tzinfo | None,
                                   endpoint_ref: str = f"Endpoint/{ENDPOINT_ID}") -> Json:
    """A stored study (``studies`` row, its series and instances; the order of the same Study UID if
    any) -> ImagingStudy with status ``available`` (mapping-reference 3.1). ``study["tz_offset"]``: Timezone
    Offset From UTC (0008,0201) of the stored instances, which places Study/Series Date and Time (PS3.3
    C.12.1.1.8); without it they are in the hub's zone ``tz``."""
    updated = study["updated_at"]
    if order is not None and order["updated_at"] > updated:
        updated = order["updated_at"]
    order_attrs = json.loads(order["attrs"]) if order is not None else {}
    accession = study.get("accession_number") or ""
    out = _study_head(str(study["public_id"]), "available", study["study_uid"], accession, order_attrs, updated)
    ordered = sorted(series, key=lambda s: (s.get("series_number") is None, s.get("series_number") or 0,
                                            s["series_uid"]))
    mods = sorted({s.get("modality") for s in ordered if s.get("modality")})
    if mods:
        out["modality"] = [dcm_coding(m) for m in mods]
    out["subject"] = {"reference": patient_ref}
    offset = str(study.get("tz_offset") or "")
    started = dicom_datetime(study.get("study_date"), study.get("study_time"), tz, offset)
    if started:
        out["started"] = started
    based_on = _based_on(order, accession, order_attrs)
    if based_on:
        out["basedOn"] = based_on
    if study.get("referring_physician_name"):
        name = human_name(study["referring_physician_name"])
        if name:
            out["referrer"] = {"display": name["text"]}
    out["endpoint"] = [{"reference": endpoint_ref}]
    series_json = [_series_json(s, sorted(instances.get(s["pk"], []), key=lambda i: (
        i.get("instance_number") is None, i.get("instance_number") or 0, i["sop_instance_uid"])), endpoint_ref, tz,
        offset)
        for s in ordered]
    out["numberOfSeries"] = len(series_json)
    out["numberOfInstances"] = sum(s["numberOfInstances"] for s in series_json)
    _procedure(out, order_attrs)
    if study.get("study_description"):
        out["description"] = study["study_description"]
    if series_json:
        out["series"] = series_json
    return out


def order_status_to_imaging_status(order_status: str, step_statuses: list[str]) -> str:
    """mapping-reference 2.4: an order without images is ``registered`` until cancelled/discontinued."""
    if order_status in CANCELLED_ORDER_STATES:
        return "cancelled"
    if step_statuses and all(s in FINAL_CANCELLED_STEPS for s in step_statuses):
        return "cancelled"
    return "registered"


def _procedure(out: Json, attrs: Row) -> None:
    codes = []
    for item in seq_items(attrs, "00321064"):  # Requested Procedure Code Sequence
        code, scheme, meaning = first_text(item, "00080100"), first_text(item, "00080102"), first_text(item, "00080104")
        if code:
            coding: Json = {"system": _scheme_uri(scheme), "code": code}
            if meaning:
                coding["display"] = meaning
            codes.append({"coding": [coding], **({"text": meaning} if meaning else {})})
    if codes:
        out["procedureCode"] = codes
    reason = first_text(attrs, "00401002")
    if reason:
        out["reasonCode"] = [{"text": reason}]


def _scheme_uri(scheme: str) -> str:
    """Coding Scheme Designator -> FHIR system (PS3.16 Table 8-1 for the public ones)."""
    known = {"LN": "http://loinc.org", "SCT": SNOMED, "SRT": SNOMED, "DCM": DCM, "RADLEX": "http://radlex.org"}
    return known.get(scheme.upper(), f"urn:dicom:coding-scheme:{scheme or 'local'}")


def order_to_imaging_study(order: Row, steps: list[Row], patient_ref: str, tz: tzinfo | None,
                           endpoint_ref: str = f"Endpoint/{ENDPOINT_ID}") -> Json:
    """An order whose study has no stored images yet -> ImagingStudy ``registered``/``cancelled``
    (the IHE Imaging ServiceRequest IG pre-created ImagingStudy): Study UID, accession, planned
    modalities and the earliest scheduled step start, placed by the order's Timezone Offset From UTC
    (0008,0201) when it has one (HL7 TQ1-7 / occurrenceDateTime offset), else in the hub's zone ``tz``."""
    attrs = json.loads(order["attrs"])
    updated = max([order["updated_at"], *(s["updated_at"] for s in steps)])
    status = order_status_to_imaging_status(order.get("status") or "", [s["status"] for s in steps])
    accession = order.get("accession_number") or ""
    out = _study_head(order_study_id(int(order["pk"])), status, order["study_uid"], accession, attrs, updated)
    mods = sorted({s["modality"] for s in steps if s.get("modality")})
    if mods:
        out["modality"] = [dcm_coding(m) for m in mods]
    out["subject"] = {"reference": patient_ref}
    starts = sorted((s["start_date"], s["start_time"]) for s in steps if s.get("start_date"))
    started = dicom_datetime(starts[0][0], starts[0][1], tz, offset_of(attrs)) if starts else None
    if started:
        out["started"] = started
    based_on = _based_on(order, accession, attrs)
    if based_on:
        out["basedOn"] = based_on
    referrer = human_name(first_text(attrs, "00080090"))
    if referrer:
        out["referrer"] = {"display": referrer["text"]}
    out["endpoint"] = [{"reference": endpoint_ref}]
    out["numberOfSeries"] = 0
    out["numberOfInstances"] = 0
    _procedure(out, attrs)
    description = first_text(attrs, "00321060")
    if description:
        out["description"] = description
    return out
