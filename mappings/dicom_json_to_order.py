"""A Modality Worklist item given as DICOM JSON (PS3.18 F.2; ``POST /worklists``) -> the order command
the HL7 path would have produced, so REST-created items live in the same tables and answer MWL C-FIND
(PS3.4 Table K.6-1) like any other."""

from __future__ import annotations

import uuid
from typing import Any

from hub.domain.orders import (
    DicomJson,
    OrderAction,
    OrderCommand,
    PatientIdentity,
    PatientRecord,
    ScheduledStep,
    StepStatus,
)
from mappings.ascii import is_digits

PATIENT_TAGS = ("00100010", "00100020", "00100021", "00100024", "00100030", "00100040", "00101002", "00101030",
                "00101020", "00102000", "001021C0", "00104000", "00101040", "00100050")
SPS_SEQUENCE = "00400100"
MAX = {"SH": 16, "AE": 16, "CS": 16, "LO": 64, "UI": 64, "DA": 8, "PN": 64 * 3}


class WorklistItemError(ValueError):
    """The body is not a usable MWL item; ``attribute`` names the DICOM keyword or tag."""

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        self.attribute = attribute


def _text(attrs: DicomJson, tag: str) -> str:
    elem = attrs.get(tag)
    if not isinstance(elem, dict):
        return ""
    value = (elem.get("Value") or [""])[0]
    if isinstance(value, dict):
        return str(value.get("Alphabetic", ""))
    return "" if value is None else str(value)


def _check(attrs: DicomJson, where: str) -> None:
    for tag, elem in attrs.items():
        if len(tag) != 8 or not all(c in "0123456789ABCDEFabcdef" for c in tag) or not isinstance(elem, dict):
            raise WorklistItemError(f"{where}{tag}", "not a DICOM JSON element")
        vr = elem.get("vr")
        if not isinstance(vr, str) or len(vr) != 2:
            raise WorklistItemError(f"{where}{tag}", "element without a VR")
        for v in elem.get("Value") or []:
            if isinstance(v, str) and vr in MAX and len(v) > MAX[vr]:
                raise WorklistItemError(f"{where}{tag}", f"value longer than {vr} allows ({MAX[vr]})")


def dicom_json_to_order(body: Any) -> OrderCommand:  # noqa: ANN401 - parsed JSON of unknown shape
    """The order of one MWL item: patient module, request-level attributes and its SPS items."""
    if not isinstance(body, dict):
        raise WorklistItemError("", "the body must be one DICOM JSON object")
    _check(body, "")
    patient_id = _text(body, "00100020").strip()
    if not patient_id:
        raise WorklistItemError("PatientID", "PatientID (0010,0020) is required")
    items = (body.get(SPS_SEQUENCE) or {}).get("Value") or []
    if not items or not all(isinstance(i, dict) for i in items):
        raise WorklistItemError("ScheduledProcedureStepSequence", "at least one Scheduled Procedure Step item")
    study_uid = _text(body, "0020000D").strip() or f"2.25.{uuid.uuid4().int}"
    rp_id = _text(body, "00401001").strip()
    steps: list[ScheduledStep] = []
    for n, item in enumerate(items, start=1):
        _check(item, f"ScheduledProcedureStepSequence[{n}].")
        start = _text(item, "00400002")
        if len(start) != 8 or not is_digits(start):
            raise WorklistItemError("ScheduledProcedureStepStartDate", "YYYYMMDD required in every step")
        sps_id = _text(item, "00400009").strip() or (rp_id or "SPS") + (f".{n}" if len(items) > 1 else "")
        sps = dict(item)
        sps["00400009"] = {"vr": "SH", "Value": [sps_id[:16]]}
        sps["00400020"] = {"vr": "CS", "Value": [StepStatus.SCHEDULED.value]}
        for tag, vr in (("00400001", "AE"), ("00080060", "CS"), ("00400003", "TM"), ("00400006", "PN"),
                        ("00400007", "LO"), ("00400010", "SH"), ("00400011", "SH")):
            sps.setdefault(tag, {"vr": vr})
        steps.append(ScheduledStep(sps_id[:16], StepStatus.SCHEDULED, _text(item, "00080060"), _text(item, "00400001"),
                                   start, _text(item, "00400003"), sps))
    patient = {t: body[t] for t in PATIENT_TAGS if t in body}
    attrs = {t: e for t, e in body.items() if t not in patient and t not in (SPS_SEQUENCE, "00080005")}
    attrs["0020000D"] = {"vr": "UI", "Value": [study_uid]}
    identity = PatientIdentity(patient_id, _text(body, "00100021"))
    return OrderCommand(
        action=OrderAction.CREATE, control="NW", order_status="SC", patient=PatientRecord(identity, patient),
        study_uid=study_uid, accession_number=_text(body, "00080050"), requested_procedure_id=rp_id,
        placer_order=_text(body, "00402016"), filler_order=_text(body, "00402017"), attrs=attrs, steps=steps,
        specific_character_set="ISO_IR 192")
