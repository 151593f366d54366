"""HL7 ORU^R01 (RAD-28 style final report) -> ``ReportCommand`` (mapping-reference §5 sample 07, §2.3 OBX).

The Study Instance UID comes from the OBX coded ``113014^DICOM Study^DCM``; the report text is every other
text OBX (TX/FT/ST/CE) in order, repetitions and segments joined with newlines, escapes resolved.
"""

from __future__ import annotations

from typing import Any

from hub.domain.orders import PatientRecord, ReportCommand
from mappings.hl7_message import Hl7ParseError, ParsedMessage
from mappings.hl7_values import Fitter, cnn_to_pn, elem, parse_ts, pn_elem, valid_uid, xcn_to_pn

STUDY_UID_CODE = "113014"  # DCM "DICOM Study"
_TEXT_TYPES = ("TX", "FT", "ST", "CE", "CWE")


def oru_to_report(msg: ParsedMessage, patient: PatientRecord, fit: Fitter) -> ReportCommand:
    """ORU^R01 -> ReportCommand; needs a Study UID (OBX 113014) or an accession number (OBR-18)."""
    obr = msg.first("OBR")
    if obr is None:
        raise Hl7ParseError("100", "OBR^1", "OBR segment missing", msg.header)
    study_uid, texts, obs_time = "", [], ""
    for obx in msg.all("OBX"):
        if obx.get(3, 1) == STUDY_UID_CODE:
            study_uid = obx.get(5)
            if not valid_uid(study_uid):
                raise Hl7ParseError("102", obx.location(5), "invalid Study Instance UID", msg.header)
            continue
        if obx.get(2).upper() not in _TEXT_TYPES:
            continue
        values = [obx.get(5, r=r) for r in range(1, obx.repetition_count(5) + 1)]
        if obx.get(2).upper() in ("CE", "CWE"):
            values = [obx.get(5, 2, r=r) or obx.get(5, 1, r=r) for r in range(1, obx.repetition_count(5) + 1)]
        texts.extend(v for v in values if v)
        obs_time = obs_time or obx.get(14, 1)
    accession = fit(obr.get(18, 1), "SH", obr.location(18))
    if not study_uid and not accession:
        raise Hl7ParseError("101", obr.location(18), "neither Study Instance UID (OBX 113014) nor accession",
                            msg.header)
    observed = obr.get(22, 1) or obs_time or obr.get(7, 1)
    ts = parse_ts(observed, obr.location(22), msg.header)
    pv1 = msg.first("PV1")
    attrs: dict[str, Any] = {
        "0020000D": elem("UI", study_uid),
        "00080050": elem("SH", accession),
        "00401001": elem("SH", fit(obr.get(19, 1), "SH", obr.location(19))),
        "00081060": pn_elem(fit(cnn_to_pn(obr, 32), "PN", obr.location(32))),
        "00080090": pn_elem(fit(xcn_to_pn(pv1, 8), "PN", pv1.location(8)) if pv1 else ""),
        "00081030": elem("LO", fit(obr.get(4, 2), "LO", obr.location(4, 2))),
    }
    if msg.dicom_charset:
        attrs["00080005"] = elem("CS", msg.dicom_charset)
    return ReportCommand(
        study_uid=study_uid, accession_number=accession, result_status=obr.get(25).upper(), text="\n".join(texts),
        observation_time=ts.dicom_datetime if ts else "", patient=patient, attrs=attrs,
    )
