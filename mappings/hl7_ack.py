"""Original-mode HL7 acknowledgements (mapping-reference §1.7; HL7 v2.5 ch. 2.9, IHE RAD TF-2 §2.4).

MSH with sender and receiver swapped, MSH-9 ``ACK^<trigger>^ACK``, MSA-2 echoing MSH-10. Errors: v2.5+ ERR
(ERR-2 location, ERR-3 table 0357 code, ERR-4 severity, ERR-8 text); v2.3/2.3.1/2.4 ERR-1 (ELD) plus the
text in MSA-3, which legacy receivers read. Encoded with the charset of the acknowledged message; no MLLP
framing (the adapter frames).
"""

from __future__ import annotations

from datetime import datetime

from mappings.hl7_charsets import charset_for_msh18
from mappings.hl7_message import TABLE_0357, Delimiters, Hl7ParseError, MshInfo, escape, version_tuple

_AR_CODES = frozenset({"200", "201", "202", "203", "207"})


def ack_code_for(error: Hl7ParseError) -> str:
    """AR for unsupported type/event/processing id/version, internal errors and unreadable MSH; else AE."""
    return "AR" if error.code in _AR_CODES or error.header is None else "AE"


def ack_for(
    msg_header_info: MshInfo | None,
    code: str,
    *,
    err_code: str = "",
    location: str = "",
    text: str = "",
    control_id: str,
    now: datetime | None = None,
    local_application: str = "",
    local_facility: str = "",
) -> bytes:
    """The ACK for a message whose header is ``msg_header_info`` (``None`` when MSH could not be read:
    a best-effort AR in v2.5.1 with empty MSA-2). ``code`` is AA, AE or AR."""
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"acknowledgment code must be AA, AE or AR, not {code!r}")
    hdr = msg_header_info or MshInfo(version="2.5.1", processing_id="P")
    d = hdr.delimiters if msg_header_info else Delimiters()
    d = Delimiters(d.field, d.component, d.repetition, d.escape, d.subcomponent)  # ACK uses four characters
    version = hdr.version or "2.5.1"
    vt = version_tuple(version)
    stamp = (now or datetime.now()).strftime("%Y%m%d%H%M%S")
    msg_type = f"ACK{d.component}{hdr.trigger_event}" + (f"{d.component}ACK" if vt >= (2, 3, 1) else "")
    if not hdr.trigger_event:
        msg_type = "ACK"

    def e(value: str) -> str:
        return escape(value, d)

    msh = [
        "MSH", d.component + d.repetition + d.escape + d.subcomponent,
        e(hdr.receiving_application or local_application), e(hdr.receiving_facility or local_facility),
        e(hdr.sending_application), e(hdr.sending_facility), stamp, "", msg_type, e(control_id),
        e(hdr.processing_id or "P"), e(version),
    ]
    if hdr.charset:
        msh += [""] * 5 + [e(hdr.charset)]
    legacy = vt < (2, 5)
    message = text or (TABLE_0357.get(err_code, "") if err_code else "")
    msa = ["MSA", code, e(hdr.control_id)]
    if legacy and code != "AA" and message:
        msa.append(e(message[:80]))
    segments = [d.field.join(msh), d.field.join(msa)]
    if err_code:
        name = TABLE_0357.get(err_code, "")
        if legacy:
            parts = (location.split("^") + ["", "", ""])[:3] if location else ["", "", ""]
            eld = d.component.join([e(p) for p in parts] + [d.subcomponent.join((err_code, e(name), "HL70357"))])
            segments.append(d.field.join(["ERR", eld]))
        else:
            severity = "E" if code != "AA" else "W"
            loc = d.component.join(e(p) for p in location.split("^")) if location else ""
            err_code_field = d.component.join((err_code, e(name), "HL70357"))
            segments.append(d.field.join(["ERR", "", loc, err_code_field, severity, "", "", "", e(message)]))
    row = charset_for_msh18(hdr.charset) if hdr.charset else None
    codec = row.codec if row else (hdr.codec if msg_header_info else "ascii")
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")


def ack_for_error(error: Hl7ParseError, *, control_id: str, now: datetime | None = None,
                  local_application: str = "", local_facility: str = "") -> bytes:
    """AE/AR for a rejected message, built from the header the error carries (``ack_code_for``)."""
    return ack_for(error.header, ack_code_for(error), err_code=error.code, location=error.location,
                   text=error.message, control_id=control_id, now=now, local_application=local_application,
                   local_facility=local_facility)
