"""Inbound HL7 v2 (IHE RAD-4/RAD-13 orders, RAD-12 patient update, RAD-128-style reports): one message in,
one original-mode acknowledgement out (HL7 v2.5.1 2.9.2).

AA is returned only after everything the message asks is committed, together with the record of the
answer: a resent message (same sender and MSH-10) gets the same answer and changes nothing. Content
errors get AE with an ERR segment (table 0357 code and location); unsupported types, versions and
failures unrelated to content get AR. Logs name the sender and control id, never patient data.
"""

from __future__ import annotations

import logging
import uuid

from hub.domain.orders import Hl7Mapped
from hub.errors import HubError
from hub.settings import Hl7Settings, pairs
from hub.store.orders import AlreadyAnswered, OrderRepository, OrderUnit
from mappings.hl7_ack import ack_for, ack_for_error
from mappings.hl7_charsets import charset_for_msh18
from mappings.hl7_message import Hl7ParseError, ParsedMessage, parse_hl7, peek_header
from mappings.hl7_to_order import DEFAULT_MODALITY_MAP, MappingPolicy, hl7_to_mapped

log = logging.getLogger(__name__)


def policy_from_settings(s: Hl7Settings) -> MappingPolicy:
    """The site's mapping choices (README "Order workflow") as the mapping's policy."""
    return MappingPolicy(
        primary_issuer=s.primary_issuer,
        study_uid={"derive": "rp_id", "generate": "generate", "reject": "reject"}[s.study_uid_policy],
        overflow=s.overflow,
        modality_map={**DEFAULT_MODALITY_MAP, **pairs(s.modality_map)},
        station_by_modality=pairs(s.station_by_modality),
    )


def message_codec(raw: bytes, s: Hl7Settings) -> str:
    """The codec for a message whose MSH-18 is empty (mapping-reference 1.8): the sender's (MSH-3)
    entry in ``sender_charsets``, else ``default_charset``."""
    header = peek_header(raw)
    value = pairs(s.sender_charsets).get(header.sending_application, "") if header else ""
    row = charset_for_msh18(value or s.default_charset)
    return row.codec if row else "iso8859-1"


class Hl7InboundService:
    def __init__(self, orders: OrderRepository, settings: Hl7Settings) -> None:
        self.orders = orders
        self.settings = settings
        self.policy = policy_from_settings(settings)

    def _ack_id(self) -> str:
        return uuid.uuid4().hex[:20].upper()

    def _local(self) -> dict[str, str]:
        return {"local_application": self.settings.sending_application,
                "local_facility": self.settings.sending_facility}

    def handle(self, raw: bytes, peer: str = "") -> bytes:
        """Process one de-framed message and return its ACK."""
        try:
            msg = parse_hl7(raw, default_charset=message_codec(raw, self.settings))
        except Hl7ParseError as err:
            log.info("HL7 message from %s refused: %s at %s", peer, err.code, err.location)
            return ack_for_error(err, control_id=self._ack_id(), **self._local())
        h = msg.header
        sender = f"{h.sending_application}|{h.sending_facility}"
        control_id = h.control_id
        try:
            mapped = hl7_to_mapped(msg, self.policy)
        except Hl7ParseError as err:
            log.info("HL7 %s %s from %s refused: %s at %s", h.message_code, control_id, sender, err.code,
                     err.location)
            return self._remember_nak(sender, msg, ack_for_error(err, control_id=self._ack_id(), **self._local()),
                                      "AR" if err.code in ("200", "201", "202", "203") else "AE")
        try:
            # Optimistic: a resend is found when its answer cannot be recorded (unique sender + MSH-10);
            # its changes are then rolled back. One query fewer for every message that is not a resend.
            with self.orders.unit() as unit:
                self._apply(unit, mapped, sender)
                ack = ack_for(h, "AA", control_id=self._ack_id(), **self._local())
                if control_id:
                    unit.remember(sender, control_id, h.message_code, "AA", ack)
        except AlreadyAnswered:
            log.info("HL7 %s %s from %s is a resend: same answer", h.message_code, control_id, sender)
            previous = self.orders.answered(sender, control_id)
            assert previous is not None
            return previous
        except HubError as exc:
            log.info("HL7 %s %s from %s refused: %s", h.message_code, control_id, sender, exc.code)
            code = "AE" if exc.hl7_ack == "AE" else "AR"
            nak = ack_for(h, code, err_code=exc.info.hl7_err_code, location=exc.attribute or "",
                          text=exc.message, control_id=self._ack_id(), **self._local())
            if code == "AE":
                return self._remember_nak(sender, msg, nak, code)  # a resend of an accepted message gets its AA
            previous = self.orders.answered(sender, control_id) if control_id else None
            return previous if previous is not None else nak
        except Exception:  # database down, ...: AR, not remembered, so a resend is processed again
            log.exception("HL7 %s %s from %s failed", h.message_code, control_id, sender)
            return ack_for(h, "AR", err_code="207", text="application internal error", control_id=self._ack_id(),
                           **self._local())
        log.info("HL7 %s %s from %s accepted (%d orders)", h.message_code, control_id, sender, len(mapped.orders))
        return ack

    @staticmethod
    def _apply(unit: OrderUnit, mapped: Hl7Mapped, sender: str) -> None:
        for cmd in mapped.orders:
            unit.apply_order(cmd, sender)
        upd = mapped.patient_update
        if upd is not None:
            if upd.prior is not None:
                unit.merge_patient(upd)
            else:
                unit.update_patient(upd)
        if mapped.report is not None:
            unit.add_report(mapped.report)

    def _remember_nak(self, sender: str, msg: ParsedMessage, nak: bytes, code: str) -> bytes:
        """A content error is an answer too: the same message sent again gets the same NAK."""
        control_id = msg.header.control_id
        if not control_id:
            return nak
        try:
            with self.orders.unit() as unit:
                if (previous := unit.answered(sender, control_id)) is not None:
                    return previous
                unit.remember(sender, control_id, msg.header.message_code, code, nak)
        except Exception:  # the NAK still goes out; a resend is simply evaluated again
            log.exception("could not record the answer to an HL7 message")
        return nak
