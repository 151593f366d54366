"""HL7 v2 order, ADT and report messages -> ``Hl7Mapped`` (mapping-reference §1.2-§1.6, IHE RAD-4/RAD-13).

ORM^O01 (v2.3/2.3.1/2.5, ZDS): one ``OrderCommand`` per ORC/OBR group, one step from OBR(+ZDS).
OMI^O23 (v2.5.1, TQ1): one ``OrderCommand`` per ORC/TQ1/OBR group, one step per IPC.
ADT^A01/A04/A05/A08/A31/A40 -> ``PatientUpdate``; ORU^R01 -> ``ReportCommand`` (``hl7_to_report``).
Every MWL return key of type 1/2 (PS3.4 Table K.6-1) is present in the DICOM JSON, empty when unknown:
request-level keys in ``OrderCommand.attrs`` (patient keys the PID did not state as empty placeholders under
the patient's own ``attrs``), SPS keys in ``ScheduledStep.attrs``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.domain.orders import Hl7Mapped, OrderAction, OrderCommand, PatientRecord, ScheduledStep, StepStatus
from mappings.hl7_message import Hl7ParseError, ParsedMessage, Segment, version_tuple
from mappings.hl7_to_patient import ADT_EVENTS, adt_to_update, patient_comments, pid_to_patient
from mappings.hl7_to_report import oru_to_report
from mappings.hl7_values import (
    Fitter,
    cnn_to_pn,
    code_item,
    elem,
    hd_item,
    number,
    parse_ts,
    pn_elem,
    seq_elem,
    valid_uid,
    xcn_to_pn,
)

# HL7 table 0074 (diagnostic service section) and common sender codes -> DICOM Modality (CID 29)
DEFAULT_MODALITY_MAP = {"RAD": "", "CT": "CT", "MR": "MR", "MRI": "MR", "US": "US", "NMS": "NM", "NM": "NM",
                        "RX": "CR", "CR": "CR", "DX": "DX", "XA": "XA", "MG": "MG", "PT": "PT", "PET": "PT",
                        "RF": "RF", "OT": "OT", "IO": "IO", "ES": "ES", "OP": "OP", "XC": "XC"}
PRIORITY = {"S": "STAT", "A": "HIGH", "P": "HIGH", "C": "HIGH", "R": "ROUTINE", "T": "MEDIUM"}
_UID_NAMESPACE = uuid.NAMESPACE_OID


@dataclass(frozen=True)
class MappingPolicy:
    """The mapping decisions of mapping-reference §6 that are configurable per sender."""

    primary_issuer: str = ""  # CX-4.1 of the primary PID-3 repetition; "" = first repetition
    other_patient_ids: str = "all"  # all | other | none -> Other Patient IDs Sequence
    study_uid: str = "rp_id"  # missing Study UID: reject | rp_id (name-based from RP ID/accession) | generate
    overflow: str = "reject"  # value longer than its VR: reject (ERR 102) | truncate
    missing_start: str = "message_time"  # no SPS start: message_time (MSH-7) | now | reject
    date_only_start_time: str = "000000"  # TM used when the start has day precision only
    modality_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MODALITY_MAP))
    station_by_modality: Mapping[str, str] = field(default_factory=dict)  # fallback Scheduled Station AE
    description_from_obr4: bool = True  # Requested Procedure Description from OBR-4.2 when OBR-44 is empty
    institution_from_msh4: bool = True  # Institution Name from MSH-4 when ORC-17 is empty


# (ORC-1, ORC-5) -> action, SPS status (§1.4); None as ORC-5 = any value
_CONTROL = {
    ("NW", None): (OrderAction.CREATE, StepStatus.SCHEDULED),
    ("XO", "SC"): (OrderAction.UPDATE, StepStatus.SCHEDULED),
    ("SC", "SC"): (OrderAction.UPDATE, StepStatus.SCHEDULED),
    ("XO", "CM"): (OrderAction.STATUS, StepStatus.COMPLETED),
    ("SC", "CM"): (OrderAction.STATUS, StepStatus.COMPLETED),
    ("SC", "A"): (OrderAction.STATUS, StepStatus.COMPLETED),
    ("SC", "IP"): (OrderAction.STATUS, StepStatus.STARTED),
    ("CA", None): (OrderAction.CANCEL, StepStatus.CANCELED),
    ("OC", None): (OrderAction.CANCEL, StepStatus.CANCELED),
    ("DC", None): (OrderAction.DISCONTINUE, StepStatus.DISCONTINUED),
    ("OD", None): (OrderAction.DISCONTINUE, StepStatus.DISCONTINUED),
}


@dataclass
class _Group:
    orc: Segment
    obr: Segment | None = None
    tq1: Segment | None = None
    ipcs: list[Segment] = field(default_factory=list)
    notes: list[Segment] = field(default_factory=list)
    obxs: list[Segment] = field(default_factory=list)
    zds: Segment | None = None


def hl7_to_mapped(msg: ParsedMessage, policy: MappingPolicy | None = None, *, now: datetime | None = None) -> Hl7Mapped:
    """Map one parsed message; ``Hl7ParseError`` (200/201 for unsupported MSH-9, 10x for content) otherwise."""
    policy = policy or MappingPolicy()
    mtype, event = msg.message_type, msg.trigger_event
    supported = {"ORM": ("O01",), "OMI": ("O23",), "ADT": ADT_EVENTS, "ORU": ("R01",)}
    if mtype not in supported:
        raise Hl7ParseError("200", "MSH^1^9^1", "unsupported message type", msg.header)
    if event not in supported[mtype]:
        raise Hl7ParseError("201", "MSH^1^9^2", "unsupported event code", msg.header)
    fit = Fitter(policy.overflow, msg.header)
    code = f"{mtype}^{event}"
    if mtype == "ADT":
        update = adt_to_update(msg, primary_issuer=policy.primary_issuer, other_ids=policy.other_patient_ids, fit=fit)
        return Hl7Mapped(message_type=code, patient_update=update)
    pid = msg.first("PID")
    if pid is None:
        raise Hl7ParseError("100", "PID^1", "PID segment missing", msg.header)
    patient = pid_to_patient(msg, pid, primary_issuer=policy.primary_issuer, other_ids=policy.other_patient_ids,
                             fit=fit, comments=patient_comments(msg))
    if mtype == "ORU":
        return Hl7Mapped(message_type=code, report=oru_to_report(msg, patient, fit))
    orders = [_order(msg, g, patient, policy, fit, now) for g in _groups(msg)]
    return Hl7Mapped(message_type=code, orders=orders)


def _groups(msg: ParsedMessage) -> list[_Group]:
    """Split the order part into ORC groups; order segments before the first ORC are a sequence error."""
    groups: list[_Group] = []
    for seg in msg.segments:
        if seg.name == "ORC":
            groups.append(_Group(orc=seg))
            continue
        if not groups:
            if seg.name in ("OBR", "TQ1", "IPC", "ZDS"):
                raise Hl7ParseError("100", seg.location(), "order segment before ORC", msg.header)
            continue
        group = groups[-1]
        if seg.name == "OBR":
            if group.obr is not None:
                raise Hl7ParseError("100", seg.location(), "second OBR in one ORC group", msg.header)
            group.obr = seg
        elif seg.name == "TQ1" and group.tq1 is None:
            group.tq1 = seg
        elif seg.name == "IPC":
            group.ipcs.append(seg)
        elif seg.name == "NTE" and group.obr is not None and not group.ipcs and not group.obxs:
            group.notes.append(seg)
        elif seg.name == "OBX":
            group.obxs.append(seg)
        elif seg.name == "ZDS":
            group.zds = seg
    if not groups:
        raise Hl7ParseError("100", "ORC^1", "ORC segment missing", msg.header)
    for group in groups:
        if group.obr is None:
            raise Hl7ParseError("100", group.orc.location(), "OBR segment missing after ORC", msg.header)
    return groups


def _action(msg: ParsedMessage, orc: Segment) -> tuple[OrderAction, StepStatus]:
    control, status = orc.get(1).upper(), orc.get(5).upper()
    found = _CONTROL.get((control, status)) or _CONTROL.get((control, None))
    if found is None:
        raise Hl7ParseError("103", orc.location(1), "order control / order status combination not supported",
                            msg.header)
    return found


def _study_uid(msg: ParsedMessage, g: _Group, policy: MappingPolicy, rp_id: str, accession: str) -> str:
    if g.ipcs:
        uid, loc = g.ipcs[0].get(3), g.ipcs[0].location(3)
    elif g.zds is not None:
        uid, loc = g.zds.get(1, 1), g.zds.location(1)
    else:
        uid, loc = "", "ZDS^1^1" if msg.message_type == "ORM" else "IPC^1^3"
    if uid:
        if not valid_uid(uid):
            raise Hl7ParseError("102", loc, "invalid Study Instance UID", msg.header)
        return uid
    key = rp_id or accession
    if policy.study_uid == "rp_id" and key:
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, 'rishub:rp:' + key).int}"
    if policy.study_uid == "generate":
        return f"2.25.{uuid.uuid4().int}"
    raise Hl7ParseError("101", loc, "Study Instance UID missing", msg.header)


def _start(msg: ParsedMessage, g: _Group, policy: MappingPolicy, now: datetime | None) -> tuple[str, str, str]:
    """SPS start DA, TM and offset: TQ1-7 -> ORC-7.4 -> OBR-27.4 -> policy (dcm4chee-arc #4882)."""
    candidates = []
    if g.tq1 is not None:
        candidates.append((g.tq1.get(7, 1), g.tq1.location(7)))
    candidates += [(g.orc.get(7, 4, 1), g.orc.location(7, 4)), (g.obr.get(27, 4, 1), g.obr.location(27, 4))]
    for value, loc in candidates:
        ts = parse_ts(value, loc, msg.header)
        if ts is None:
            continue
        if not ts.date:
            raise Hl7ParseError("102", loc, "start date/time needs at least day precision", msg.header)
        return ts.date, ts.time or policy.date_only_start_time, ts.offset
    loc = g.tq1.location(7) if g.tq1 is not None else g.orc.location(7, 4)
    if policy.missing_start == "reject":
        raise Hl7ParseError("101", loc, "scheduled start missing", msg.header)
    if policy.missing_start == "message_time":
        ts = parse_ts(msg.header.timestamp, "MSH^1^7", msg.header)
        if ts is not None and ts.date:
            return ts.date, ts.time or policy.date_only_start_time, ts.offset
    moment = now or datetime.now()
    return moment.strftime("%Y%m%d"), moment.strftime("%H%M%S"), ""


def _modality(policy: MappingPolicy, code: str) -> str:
    code = code.strip().upper()
    if code in policy.modality_map:
        return policy.modality_map[code]
    return code if len(code) <= 16 and code.replace("_", "").isalnum() else ""


def _body_measures(obxs: list[Segment]) -> tuple[Any, Any]:
    """Patient's Weight (kg) and Size (m) from OBX (OBX-3.2 Body Weight/Height or LOINC, OBX-6 unit)."""
    weight = size = None
    for obx in obxs:
        name, code, unit = obx.get(3, 2).lower(), obx.get(3, 1), obx.get(6, 1).lower()
        val = number(obx.get(5))
        if val is None:
            continue
        if name == "body weight" or code in ("29463-7", "3141-9"):
            factor = {"kg": 1, "g": 0.001, "lb": 0.45359237, "[lb_av]": 0.45359237}.get(unit)
            weight = number(str(round(val * factor, 3))) if factor else weight
        elif name == "body height" or code in ("8302-2", "8306-3"):
            factor = {"m": 1, "cm": 0.01, "in": 0.0254, "[in_i]": 0.0254}.get(unit)
            size = number(str(round(val * factor, 3))) if factor else size
    return weight, size


def _patient_obxs(msg: ParsedMessage) -> list[Segment]:
    """OBX segments before the first ORC (patient-level observations)."""
    out = []
    for seg in msg.segments:
        if seg.name == "ORC":
            break
        if seg.name == "OBX":
            out.append(seg)
    return out


def _order(msg: ParsedMessage, g: _Group, patient: PatientRecord, policy: MappingPolicy, fit: Fitter,
           now: datetime | None) -> OrderCommand:
    orc, obr = g.orc, g.obr
    assert obr is not None
    action, status = _action(msg, orc)
    ipc = g.ipcs[0] if g.ipcs else None
    if ipc is not None and ipc.get(1, 1):
        accession = fit(ipc.get(1, 1), "SH", ipc.location(1, 1))
    else:
        accession = fit(obr.get(18, 1), "SH", obr.location(18))
    if ipc is not None and ipc.get(2, 1):
        rp_id = fit(ipc.get(2, 1), "SH", ipc.location(2))
    else:
        rp_id = fit(obr.get(19, 1), "SH", obr.location(19))
    rp_id = rp_id or accession
    if not rp_id and policy.study_uid == "generate":
        rp_id = uuid.uuid4().hex[:16].upper()
    if not rp_id:
        loc = ipc.location(2) if ipc is not None else obr.location(19)
        raise Hl7ParseError("101", loc, "Requested Procedure ID missing", msg.header)
    study_uid = _study_uid(msg, g, policy, rp_id, accession)
    start_date, start_time, offset = _start(msg, g, policy, now)
    pv1 = msg.first("PV1")
    pid = msg.first("PID")
    priority = (g.tq1.get(9, 1) if g.tq1 is not None else "") or orc.get(7, 6) or obr.get(27, 6)
    rp_desc = obr.get(44, 2) or (obr.get(4, 2) if policy.description_from_obr4 else "")
    reason = obr.get(31, 2) if obr.repetition_count(31) and len(obr.components(31)) > 1 else obr.get(31)
    placer, filler = orc.get(2, 1) or obr.get(2, 1), orc.get(3, 1) or obr.get(3, 1)
    institution = orc.get(17, 2) or (msg.header.sending_facility if policy.institution_from_msh4 else "")
    weight, size = _body_measures(g.obxs + _patient_obxs(msg))
    v25 = version_tuple(msg.version) >= (2, 5)
    attrs: dict[str, Any] = {
        "0020000D": elem("UI", study_uid),
        "00401001": elem("SH", rp_id),
        "00321060": elem("LO", fit(rp_desc, "LO", obr.location(44, 2))),
        "00321064": seq_elem(code_item(obr.get(44, 1), obr.get(44, 3), obr.get(44, 2))),
        "00401002": elem("LO", fit(reason, "LO", obr.location(31))),
        "00401003": elem("SH", PRIORITY.get(priority.upper(), "")),
        "00401004": elem("LO", fit(obr.get(30, 1), "LO", obr.location(30))),
        "00081110": seq_elem(),
        "00080050": elem("SH", accession),
        "00402016": elem("LO", fit(placer, "LO", orc.location(2, 1))),
        "00402017": elem("LO", fit(filler, "LO", orc.location(3, 1))),
        "00321032": pn_elem(fit(xcn_to_pn(obr, 16) or xcn_to_pn(orc, 12), "PN", obr.location(16))),
        "00080090": pn_elem(fit(xcn_to_pn(pv1, 8), "PN", pv1.location(8)) if pv1 else ""),
        "00080080": elem("LO", fit(institution, "LO", orc.location(17, 2))),
        "00081040": elem("LO", fit(orc.get(13, 9), "LO", orc.location(13, 9))),
        "00380010": elem("LO", fit((pv1.get(19, 1) if pv1 else "") or (pid.get(18, 1) if pid else ""), "LO",
                                   pv1.location(19) if pv1 else "PID^1^18")),
        "00380016": elem("LO", pv1.get(2) if pv1 else ""),
        "00380300": elem("LO", fit("^".join(pv1.components(3)).rstrip("^") if pv1 else "", "LO", "PV1^1^3")),
        "00380500": elem("LO", fit(obr.get(12, 2) or obr.get(12, 1), "LO", obr.location(12))),
        "00102000": elem("LO", fit(obr.get(13, 1), "LO", obr.location(13))),
        "001021C0": elem("US", 3 if pv1 and any(pv1.get(15, 1, 0, r) == "B6"
                                                 for r in range(1, pv1.repetition_count(15) + 1)) else None),
        "00101030": elem("DS", weight),
        "00102110": elem("LO", *(a.get(3, 2) or a.get(3, 1) for a in msg.all("AL1"))),
        "00380050": elem("LO"),
        "00403001": elem("LO"),
        "00081120": seq_elem(),
    }
    if size is not None:
        attrs["00101020"] = elem("DS", size)
    if offset:
        attrs["00080201"] = elem("SH", offset)
    notes = [n.get(3, r=r) for n in g.notes for r in range(1, n.repetition_count(3) + 1)]
    if any(notes):
        attrs["00401400"] = elem("LT", "\n".join(t for t in notes if t))
    reason_code = code_item(obr.get(31, 1), obr.get(31, 3), obr.get(31, 2))
    optional = {
        "0040100A": seq_elem(reason_code) if reason_code else None,
        "00400026": seq_elem(hd_item(orc.get(2, 2), orc.get(2, 3), orc.get(2, 4))) if orc.get(2, 2) else None,
        "00400027": seq_elem(hd_item(orc.get(3, 2), orc.get(3, 3), orc.get(3, 4))) if orc.get(3, 2) else None,
        "00080051": seq_elem(hd_item(ipc.get(1, 2), ipc.get(1, 3), ipc.get(1, 4)))
        if ipc is not None and ipc.get(1, 2) + ipc.get(1, 3) else None,
        "00080082": seq_elem(code_item(orc.get(17, 1), orc.get(17, 3), orc.get(17, 2)))
        if code_item(orc.get(17, 1), orc.get(17, 3), orc.get(17, 2)) else None,
        "00080096": seq_elem({"00401101": seq_elem({"00080100": elem("SH", pv1.get(8, 1))})})
        if pv1 and pv1.get(8, 1) else None,
        "00401008": elem("LO", orc.get(28, 1)) if v25 and orc.get(28, 1) else None,
        "00080081": elem("ST", "^".join(orc.components(22)).rstrip("^")) if v25 and orc.get(22) else None,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    if pv1 is not None and pv1.get(19, 4, 1) + pv1.get(19, 4, 2):
        attrs["00380014"] = seq_elem(hd_item(pv1.get(19, 4, 1), pv1.get(19, 4, 2), pv1.get(19, 4, 3)))
    admit = parse_ts(pv1.get(44, 1), pv1.location(44), msg.header) if pv1 else None
    if admit is not None:
        attrs["00380020"], attrs["00380021"] = elem("DA", admit.date), elem("TM", admit.time)
    for tag, vr in (("00100010", "PN"), ("00100020", "LO"), ("00100030", "DA"), ("00100040", "CS")):
        if tag not in patient.attrs:
            attrs[tag] = {"vr": vr}
    steps = [_step(msg, g, ipc_seg, n, len(g.ipcs), policy, fit, status, rp_id, (start_date, start_time))
             for n, ipc_seg in enumerate(g.ipcs or [None], start=1)]
    reason_text = orc.get(16, 2) or orc.get(16, 1)
    return OrderCommand(
        action=action, control=orc.get(1).upper(), order_status=orc.get(5).upper(), patient=patient,
        study_uid=study_uid, accession_number=accession, requested_procedure_id=rp_id, placer_order=placer,
        filler_order=filler, attrs=attrs, steps=steps, specific_character_set=msg.dicom_charset,
        reason=reason_text if action in (OrderAction.CANCEL, OrderAction.DISCONTINUE) else "",
        authored_at=_authored(msg, orc) if action is OrderAction.CREATE else None,
    )


def _authored(msg: ParsedMessage, orc: Segment) -> datetime | None:
    """ORC-9 Date/Time of Transaction of a new order -> ServiceRequest.authoredOn (naive UTC). Without an offset
    it is in the sender's zone (HL7 v2.5.1 2A.22): MSH-7's offset, else the hub's local zone. None (the receipt
    time) when ORC-9 is empty, below day precision or unreadable (an optional field: never a reason to refuse)."""
    try:
        ts = parse_ts(orc.get(9, 1), orc.location(9), msg.header)
        sent = parse_ts(msg.header.timestamp, "MSH^1^7", msg.header)
    except Hl7ParseError:
        return None
    if ts is None or not ts.date:
        return None
    whole, _, frac = ts.time.partition(".")
    moment = datetime.strptime(ts.date + whole.ljust(6, "0"), "%Y%m%d%H%M%S").replace(
        microsecond=int((frac + "000000")[:6]))
    offset = ts.offset or (sent.offset if sent is not None else "")
    aware = moment.replace(tzinfo=datetime.strptime(offset, "%z").tzinfo) if offset else moment.astimezone()
    return aware.astimezone(UTC).replace(tzinfo=None)


def _step(msg: ParsedMessage, g: _Group, ipc: Segment | None, n: int, count: int, policy: MappingPolicy,
          fit: Fitter, status: StepStatus, rp_id: str, start: tuple[str, str]) -> ScheduledStep:
    """One Scheduled Procedure Step Sequence item from an IPC (OMI) or from OBR + ORC (ORM)."""
    obr, orc = g.obr, g.orc
    assert obr is not None
    if ipc is not None:
        sps_id, sps_loc, desc_loc = ipc.get(4, 1), ipc.location(4), ipc.location(6, 2)
        modality = _modality(policy, ipc.get(5, 1) or obr.get(24, 1))
        stations = [ipc.get(9, 1, 0, r) for r in range(1, ipc.repetition_count(9) + 1)]
        station_loc = ipc.location(9)
        station_name, location, name_loc, where_loc = ipc.get(7, 1), ipc.get(8, 1), ipc.location(7), ipc.location(8)
        desc, protocol = ipc.get(6, 2), code_item(ipc.get(6, 1), ipc.get(6, 3), ipc.get(6, 2))
    else:
        sps_id, sps_loc, desc_loc = obr.get(20, 1), obr.location(20), obr.location(4, 5)
        modality = _modality(policy, obr.get(24, 1))
        stations, station_loc, station_name, location = [], orc.location(18), "", ""
        name_loc = where_loc = station_loc
        desc, protocol = obr.get(4, 5), code_item(obr.get(4, 4), obr.get(4, 6), obr.get(4, 5))
    stations = [s for s in stations if s] or [orc.get(18, 1)]
    stations = [s for s in stations if s] or [policy.station_by_modality.get(modality, "")]
    stations = [fit(s, "AE", station_loc) for s in stations if s]
    sps_id = fit(sps_id or (rp_id if count <= 1 else f"{rp_id}.{n}"), "SH", sps_loc)
    attrs = {
        "00400001": elem("AE", *stations),
        "00400002": elem("DA", start[0]),
        "00400003": elem("TM", start[1]),
        "00080060": elem("CS", modality),
        "00400006": pn_elem(fit(cnn_to_pn(obr, 34), "PN", obr.location(34))),
        "00400007": elem("LO", fit(desc, "LO", desc_loc)),
        "00400008": seq_elem(protocol),
        "00400009": elem("SH", sps_id),
        "00400010": elem("SH", fit(station_name, "SH", name_loc)),
        "00400011": elem("SH", fit(location, "SH", where_loc)),
        "00400012": elem("LO"),
        "00321070": elem("LO"),
        "00400020": elem("CS", status.value),
    }
    return ScheduledStep(sps_id=sps_id, status=status, modality=modality, station_aet=stations[0] if stations else "",
                         start_date=start[0], start_time=start[1], attrs=attrs)
