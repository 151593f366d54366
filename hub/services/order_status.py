"""Order status back to the RIS (IHE RAD-3/RAD-13 status update; mapping-reference 2.3): each order
status change reported by an MPPS becomes one ORM^O01 (ORC-1=SC, v2.3.1) or OMG^O19 (v2.5.1) message,
written to the outbox in the transaction of the change, so it is sent exactly when the change is
committed and survives restarts.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from hub.domain.orders import DicomJson
from hub.settings import Hl7Settings
from hub.store.outbox import enqueue, order_and_steps
from mappings.order_to_hl7 import StatusMessageInfo, status_to_hl7

RIS = "ris"


def _value(attrs: DicomJson, tag: str) -> Any:  # noqa: ANN401 - a DICOM JSON value
    v = attrs.get(tag, {}).get("Value") or [""]
    return v[0]


def _text(attrs: DicomJson, tag: str) -> str:
    v = _value(attrs, tag)
    if isinstance(v, dict):
        return str(v.get("Alphabetic", ""))
    return "" if v is None else str(v)


def _item(attrs: DicomJson, tag: str) -> DicomJson:
    v = _value(attrs, tag)
    return v if isinstance(v, dict) else {}


def _dt(attrs: DicomJson, date_tag: str, time_tag: str) -> str:
    date, time = _text(attrs, date_tag), _text(attrs, time_tag).split(".")[0]
    return (date + time) if date else ""


def status_info(order: dict[str, Any], step: dict[str, Any] | None, mpps: DicomJson, status: str,
                settings: Hl7Settings) -> StatusMessageInfo:
    """What the status message says, from the stored order (HL7 identifiers as received), its step
    and the MPPS (start/end, performed procedure, operator)."""
    patient = json.loads(order["patient_attrs"])
    attrs = json.loads(order["attrs"])
    sps = json.loads(step["attrs"]) if step else {}
    issuer_q = _item(patient, "00100024")
    code = _item(mpps, "00081032") or _item(attrs, "00321064")
    placer = _item(attrs, "00400026")
    filler = _item(attrs, "00400027")
    series = _item(mpps, "00400340")
    operator = _text(series, "00081070") or _text(series, "00081050") or _text(sps, "00400006")
    return StatusMessageInfo(
        patient_id=order["patient_id"], patient_name=_text(patient, "00100010") or _text(attrs, "00100010"),
        order_status=status, study_uid=order["study_uid"], patient_issuer=order["issuer_of_patient_id"],
        patient_universal_id=_text(issuer_q, "00400032"), patient_universal_id_type=_text(issuer_q, "00400033"),
        birth_date=_text(patient, "00100030"), sex=_text(patient, "00100040"),
        visit_number=_text(attrs, "00380010"), visit_issuer=_text(_item(attrs, "00380014"), "00400031"),
        placer_order=order["placer_order"], placer_namespace=_text(placer, "00400031"),
        filler_order=order["filler_order"], filler_namespace=_text(filler, "00400031"),
        accession_number=order["accession_number"], requested_procedure_id=order["requested_procedure_id"],
        sps_id=step["sps_id"] if step else "",
        procedure_code=(_text(code, "00080100"), _text(code, "00080104"), _text(code, "00080102")),
        modality=_text(mpps, "00080060") or (step["modality"] if step else ""),
        pps_start=_dt(mpps, "00400244", "00400245"), pps_end=_dt(mpps, "00400250", "00400251"),
        operator_name=operator, charset=_msh18(order["specific_character_set"]),
        sending_application=settings.sending_application, sending_facility=settings.sending_facility,
        receiving_application=settings.ris.receiving_application, receiving_facility=settings.ris.receiving_facility,
    )


def _msh18(dicom_charset: str) -> str:
    from mappings.hl7_charsets import dicom_to_msh18

    try:
        return dicom_to_msh18(dicom_charset) if dicom_charset else "8859/1"
    except (KeyError, ValueError):
        return "UNICODE UTF-8"


class OrderStatusReporter:
    """The MPPS service's sink for order status changes: one outbox message per change."""

    def __init__(self, settings: Hl7Settings) -> None:
        self.settings = settings

    def report(self, conn: Any, order_pk: int, status: str, mpps_attrs: DicomJson) -> None:  # noqa: ANN401
        """Inside the caller's transaction (``conn``): queue the status message of one change."""
        o, steps = order_and_steps(conn, order_pk)
        if o is None:
            return
        # The step the MPPS performed (first SSA item with a known SPS ID), else the order's first step.
        ssa = mpps_attrs.get("00400270", {}).get("Value") or []
        sps_ids = [_text(item, "00400009") for item in ssa if isinstance(item, dict)]
        step = next((s for s in steps if s["sps_id"] in sps_ids), steps[0] if steps else None)
        info = status_info(o, step, mpps_attrs, status, self.settings)
        control_id = "HUB" + uuid.uuid4().hex[:17].upper()
        message_type = self.settings.ris.message_type
        payload = status_to_hl7(info, message_type, control_id, datetime.now())  # type: ignore[arg-type]
        enqueue(conn, RIS, message_type, control_id, payload, order_pk)
