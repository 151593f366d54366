"""HL7 PID (+ NTE, MRG) -> ``PatientRecord`` / ``PatientUpdate`` (mapping-reference §1.2 "Patient
identification", §1.5 patient update and merge, quirks §4.6-4.8).

An empty HL7 field is "not sent" and leaves the attribute out; the HL7 null ``""`` writes it with zero
length and lists it in ``PatientRecord.cleared`` (HL7 v2.5 ch. 2; dcm4chee-arc #998).
"""

from __future__ import annotations

from typing import Any

from hub.domain.orders import PatientIdentity, PatientRecord, PatientUpdate
from mappings.hl7_message import Hl7ParseError, ParsedMessage, Segment
from mappings.hl7_values import Fitter, elem, parse_ts, pn_elem, seq_elem, xpn_to_pn

ADT_EVENTS = ("A01", "A04", "A05", "A08", "A31", "A40")
_SEX = {"F": "F", "M": "M", "O": "O", "A": "O", "N": "O"}


def _identity(pid: Segment, n: int, r: int) -> PatientIdentity:
    return PatientIdentity(
        patient_id=pid.get(n, 1, 0, r), issuer=pid.get(n, 4, 1, r), universal_id=pid.get(n, 4, 2, r),
        universal_id_type=pid.get(n, 4, 3, r), id_type=pid.get(n, 5, 0, r),
    )


def _qualifiers(ident: PatientIdentity) -> dict[str, Any] | None:
    """Issuer of Patient ID Qualifiers Sequence (0010,0024) item, only when a universal ID is present."""
    if not ident.universal_id:
        return None
    item = {"00400032": elem("UT", ident.universal_id), "00400033": elem("CS", ident.universal_id_type)}
    if ident.id_type:
        item["00400035"] = elem("CS", ident.id_type)  # Identifier Type Code (CX-5)
    return item


def patient_identities(pid: Segment) -> list[PatientIdentity]:
    """Every PID-3 repetition that carries an ID."""
    idents = [_identity(pid, 3, r) for r in range(1, pid.repetition_count(3) + 1)]
    return [i for i in idents if i.patient_id]


def _name(pid: Segment, n: int) -> str:
    """PID-5/-6 repetitions -> PN with Alphabetic/Ideographic/Phonetic groups from XPN-8 (A, I, P)."""
    groups = {"A": "", "I": "", "P": ""}
    for r in range(1, pid.repetition_count(n) + 1):
        rep_code = pid.get(n, 8, 0, r) or "A"
        if rep_code in groups and not groups[rep_code]:
            groups[rep_code] = xpn_to_pn(pid, n, r)
    return "=".join((groups["A"], groups["I"], groups["P"])).rstrip("=")


def _xad(seg: Segment, n: int) -> str:
    comps = seg.components(n)
    return "^".join(comps).rstrip("^")


def pid_to_patient(msg: ParsedMessage, pid: Segment, *, primary_issuer: str = "", other_ids: str = "all",
                   fit: Fitter | None = None, comments: list[Segment] | None = None) -> PatientRecord:
    """PID -> PatientRecord; PID-3 is required (ERR 101 at ``PID^1^3``).

    The primary identity is the PID-3 repetition whose CX-4.1 equals ``primary_issuer``, else the first;
    ``other_ids`` ("all" | "other" | "none") fills Other Patient IDs Sequence (0010,1002).
    """
    fit = fit or Fitter("reject", msg.header)
    idents = patient_identities(pid)
    if not idents:
        raise Hl7ParseError("101", pid.location(3), "patient identifier list (PID-3) missing", msg.header)
    primary = next((i for i in idents if primary_issuer and i.issuer == primary_issuer), idents[0])
    primary.patient_id = fit(primary.patient_id, "LO", pid.location(3, 1))
    attrs: dict[str, Any] = {
        "00100020": elem("LO", primary.patient_id),
        "00100021": elem("LO", fit(primary.issuer, "LO", pid.location(3, 4))),
    }
    if (qual := _qualifiers(primary)) is not None:
        attrs["00100024"] = seq_elem(qual)
    listed = {"all": idents, "other": [i for i in idents if i is not primary], "none": []}.get(other_ids, idents)
    if listed:
        attrs["00101002"] = seq_elem(*({
            "00100020": elem("LO", fit(i.patient_id, "LO", pid.location(3, 1))),
            "00100021": elem("LO", fit(i.issuer, "LO", pid.location(3, 4))),
            "00100022": elem("CS", "TEXT"),
            **({"00100024": seq_elem(q)} if (q := _qualifiers(i)) else {}),
        } for i in listed))
    cleared: list[str] = []

    def put(tag: str, vr: str, n: int, value: str) -> None:
        if pid.is_null(n) or pid.is_null(n, 1):
            attrs[tag] = {"vr": vr}
            cleared.append(tag)
        elif value:
            attrs[tag] = pn_elem(value) if vr == "PN" else elem(vr, fit(value, vr, pid.location(n)))

    put("00100010", "PN", 5, fit(_name(pid, 5), "PN", pid.location(5)))
    birth = parse_ts(pid.get(7, 1), pid.location(7), msg.header)
    put("00100030", "DA", 7, birth.date if birth else "")
    put("00100040", "CS", 8, _SEX.get(pid.get(8, 1).upper(), ""))
    if pid.get(8, 1) and "00100040" not in attrs:
        attrs["00100040"] = {"vr": "CS"}  # U and unknown codes: stated as unknown
    put("00101060", "PN", 6, fit(_name(pid, 6), "PN", pid.location(6)))
    put("00101040", "LO", 11, _xad(pid, 11))
    phones = [pid.get(13, 1, 0, r) for r in range(1, pid.repetition_count(13) + 1)]
    if pid.is_null(13):
        attrs["00102154"] = {"vr": "SH"}
        cleared.append("00102154")
    elif any(phones):
        attrs["00102154"] = elem("SH", *(fit(p, "SH", pid.location(13)) for p in phones if p))
    texts = [c.get(3, r=r) for c in comments or [] for r in range(1, c.repetition_count(3) + 1)]
    if any(texts):
        attrs["00104000"] = elem("LT", "\n".join(t for t in texts if t))
    return PatientRecord(identity=primary, attrs=attrs, cleared=tuple(cleared))


def patient_comments(msg: ParsedMessage) -> list[Segment]:
    """NTE segments directly after PID (Patient Comments, (0010,4000))."""
    out: list[Segment] = []
    after_pid = False
    for seg in msg.segments:
        if seg.name == "PID":
            after_pid = True
        elif seg.name == "NTE" and after_pid:
            out.append(seg)
        elif after_pid:
            break
    return out


def adt_to_update(msg: ParsedMessage, *, primary_issuer: str = "", other_ids: str = "all",
                  fit: Fitter | None = None) -> PatientUpdate:
    """ADT^A01/A04/A05/A08/A31 (create or update) and ADT^A40 (merge MRG-1 into PID-3), §1.5."""
    pid = msg.first("PID")
    if pid is None:
        raise Hl7ParseError("100", "PID^1", "PID segment missing", msg.header)
    patient = pid_to_patient(msg, pid, primary_issuer=primary_issuer, other_ids=other_ids, fit=fit,
                             comments=patient_comments(msg))
    event = msg.trigger_event
    prior = None
    if event == "A40":
        mrg = msg.first("MRG")
        prior = _identity(mrg, 1, 1) if mrg is not None else None
        if prior is None or not prior.patient_id:
            raise Hl7ParseError("101", "MRG^1^1", "prior patient identifier (MRG-1) missing", msg.header)
        if (prior.patient_id, prior.issuer) == (patient.identity.patient_id, patient.identity.issuer):
            raise Hl7ParseError("205", "MRG^1^1", "prior patient identifier equals the surviving one", msg.header)
    return PatientUpdate(event=event, patient=patient, prior=prior)
