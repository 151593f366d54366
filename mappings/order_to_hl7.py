"""Procedure status -> HL7 status message to the RIS (mapping-reference §2.3; IHE RAD-3/RAD-13 style).

``ORM^O01`` v2.3.1 (ORC-1 SC, ORC-5 IP/CM/DC, ORC-7 TQ, OBR-18/19/20, ZDS) as in sample 08, and
``OMG^O19`` v2.5.1 (TQ1 with table 0485 priority, OBR-25 R, OBX ``113014^DICOM Study^DCM``) as in sample 09.
``validate_strict`` checks an output with hl7apy's strict validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hl7apy import load_reference
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

from mappings.hl7_charsets import charset_for_msh18
from mappings.hl7_message import Delimiters, escape
from mappings.hl7_values import pn_to_xpn_parts

_D = Delimiters()
_LAYOUT = {"ORM^O01": ("ORM^O01", "2.3.1"), "OMG^O19": ("OMG^O19^OMG_O19", "2.5.1")}


@dataclass(frozen=True)
class StatusMessageInfo:
    """What the hub knows about a performed procedure step when it reports its status to the RIS."""

    patient_id: str
    patient_name: str  # DICOM PN (alphabetic group used)
    order_status: str  # ORC-5: IP (in progress), CM (completed), DC (discontinued)
    study_uid: str
    patient_issuer: str = ""  # CX-4.1
    patient_universal_id: str = ""  # CX-4.2
    patient_universal_id_type: str = ""  # CX-4.3
    patient_id_type: str = "MR"  # CX-5
    birth_date: str = ""  # DA
    sex: str = ""
    patient_class: str = "O"  # PV1-2 (from Route of Admissions), "U" when unknown
    visit_number: str = ""  # PV1-19 (Admission ID)
    visit_issuer: str = ""
    placer_order: str = ""
    placer_namespace: str = ""
    filler_order: str = ""
    filler_namespace: str = ""
    accession_number: str = ""
    requested_procedure_id: str = ""
    sps_id: str = ""
    procedure_code: tuple[str, str, str] = ("", "", "")  # code value, meaning, coding scheme (OBR-4 CE order)
    modality: str = ""
    pps_start: str = ""  # DT (YYYYMMDDHHMMSS[+ZZZZ]) of (0040,0244)+(0040,0245)
    pps_end: str = ""  # DT of (0040,0250)+(0040,0251)
    operator_id: str = ""
    operator_name: str = ""  # DICOM PN of the operator / technician
    charset: str = "8859/1"  # MSH-18 value (table 0211 or alias) the RIS expects
    sending_application: str = "HUB"
    sending_facility: str = "PACS"
    receiving_application: str = "RIS"
    receiving_facility: str = "RADIOLOGY"


def _e(value: str) -> str:
    return escape(value, _D)


def _join(*parts: str, sep: str = "^") -> str:
    return sep.join(parts).rstrip(sep)


def _segment(name: str, fields: dict[int, str]) -> str:
    last = max((n for n, v in fields.items() if v), default=0)
    return "|".join([name] + [fields.get(n, "") for n in range(1, last + 1)])


def status_to_hl7(info: StatusMessageInfo, message_type: str, control_id: str, now: datetime) -> bytes:
    """Encode the status message (``ORM^O01`` or ``OMG^O19``) in the charset of ``info.charset``."""
    if message_type not in _LAYOUT:
        raise ValueError(f"unsupported status message type {message_type!r}")
    if info.order_status not in ("IP", "CM", "DC"):
        raise ValueError("order status must be IP, CM or DC")
    msh9, version = _LAYOUT[message_type]
    omg = message_type == "OMG^O19"
    stamp = now.strftime("%Y%m%d%H%M%S")
    row = charset_for_msh18(info.charset) if info.charset else None
    if info.charset and row is None:
        raise ValueError("unknown MSH-18 character set")
    msh = "|".join(["MSH", "^~\\&", _e(info.sending_application), _e(info.sending_facility),
                    _e(info.receiving_application), _e(info.receiving_facility), stamp, "", msh9, _e(control_id),
                    "P", version] + ([""] * 5 + [row.msh18] if row and row.msh18 != "ASCII" else []))
    hd = _join(_e(info.patient_issuer), _e(info.patient_universal_id), _e(info.patient_universal_id_type),
               sep="&")
    pid3 = _join(_e(info.patient_id), "", "", hd, _e(info.patient_id_type))
    xpn = _join(*(_e(p) for p in pn_to_xpn_parts(info.patient_name)))
    pid = _segment("PID", {1: "1", 3: pid3, 5: xpn, 7: info.birth_date, 8: _e(info.sex)})
    visit = _join(_e(info.visit_number), "", "", _e(info.visit_issuer), "VN") if info.visit_number else ""
    pv1 = _segment("PV1", {1: "1", 2: _e(info.patient_class or "U"), 19: visit})
    placer = _join(_e(info.placer_order), _e(info.placer_namespace))
    filler = _join(_e(info.filler_order), _e(info.filler_namespace))
    tq = "" if omg else _join("", "", "", info.pps_start, info.pps_end, "R")
    orc = _segment("ORC", {1: "SC", 2: placer, 3: filler, 5: info.order_status, 7: tq, 9: stamp})
    code, meaning, scheme = info.procedure_code
    technician = _join(_e(info.operator_id), *(_e(p) for p in pn_to_xpn_parts(info.operator_name)[:3]), sep="&")
    obr = _segment("OBR", {
        1: "1", 2: placer, 3: filler, 4: _join(_e(code), _e(meaning), _e(scheme)), 7: info.pps_start,
        8: info.pps_end, 18: _e(info.accession_number), 19: _e(info.requested_procedure_id), 20: _e(info.sps_id),
        24: _e(info.modality), 25: "R" if omg else "", 34: technician,
    })
    segments = [msh, pid, pv1, orc]
    if omg:
        segments.append(_segment("TQ1", {1: "1", 7: info.pps_start, 8: info.pps_end, 9: "R^Routine^HL70485"}))
        segments.append(obr)
        segments.append(_segment("OBX", {1: "1", 2: "ST", 3: "113014^DICOM Study^DCM", 5: _e(info.study_uid),
                                         11: "O"}))
    else:
        segments.append(obr)
        segments.append(_segment("ZDS", {1: _join(_e(info.study_uid), "100", "Application", "DICOM")}))
    codec = row.codec if row else "ascii"
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")


def _relax_choices(ref: Any) -> Any:
    """hl7apy validates a ``choice`` group as a sequence (every alternative required): relax the
    alternatives to optional; ``_check_choices`` then requires exactly one of them."""
    if isinstance(ref, list | tuple) and len(ref) >= 2 and ref[0] in ("sequence", "choice") \
            and isinstance(ref[1], list | tuple):
        children = []
        for child in ref[1]:
            child = list(child)
            if ref[0] == "choice":
                child[2] = (0, child[2][1])
            child[1] = _relax_choices(child[1])
            children.append(tuple(child) if isinstance(child, list) else child)
        return ("sequence", tuple(children), *ref[2:])
    return ref


def _check_choices(element: Any, ref: Any) -> None:
    if not (isinstance(ref, list | tuple) and len(ref) >= 2 and isinstance(ref[1], list | tuple)):
        return
    if ref[0] == "choice" and len(element.children) != 1:
        raise ValidationError(f"{element.name}: exactly one alternative expected")
    for child_ref in ref[1]:
        for child in element.children.get(child_ref[0]) if element.classname in ("Message", "Group") else []:
            if child.classname == "Group":
                _check_choices(child, child_ref[1])


def validate_strict(message: bytes | str, codec: str = "iso8859-1") -> None:
    """Parse with ``VALIDATION_LEVEL.STRICT`` and run hl7apy's validator (errors only; warnings such as
    table-value hints are not failures). Raises ``hl7apy.exceptions.ValidationError``."""
    text = message.decode(codec) if isinstance(message, bytes) else message
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    ref = load_reference(msg.name, "Message", msg.version)
    _check_choices(msg, ref)
    Validator.validate(msg, reference=_relax_choices(ref))
