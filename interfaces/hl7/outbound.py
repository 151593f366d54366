"""Drains the outbox to the RIS over MLLP (HL7 v2.5.1 Appendix C): one message at a time, in order,
each retried with exponential back-off until the RIS answers AA (an AE/AR or no answer is retried:
the RIS decides by fixing its side). The outbox lease keeps two senders (threads or nodes) from sending
the same message at once; a restart resumes with whatever is still pending.
"""

from __future__ import annotations

import logging
import ssl
import threading

from hub.app import Hub
from interfaces.hl7.client import MllpClient
from mappings.hl7_message import Hl7ParseError, parse_hl7

log = logging.getLogger(__name__)
DESTINATION = "ris"


def ack_code(ack: bytes) -> str:
    """MSA-1 of an acknowledgement ("" when it is not one)."""
    try:
        msa = parse_hl7(ack).first("MSA")
    except Hl7ParseError:
        return ""
    return msa.get(1) if msa is not None else ""


class OutboxSender:
    def __init__(self, hub: Hub, *, poll: float = 0.5) -> None:
        self.hub = hub
        self.ris = hub.settings.hl7.ris
        self.poll = poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: MllpClient | None = None

    def start(self) -> None:
        if not self.ris.host or not self.ris.port:
            log.info("no [hl7.ris] host/port: order status messages stay queued in the outbox")
            return
        self._thread = threading.Thread(target=self._run, name="hl7-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now (a change was just committed)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._client is not None:
            self._client.close()

    def _connect(self) -> MllpClient:
        if self._client is None:
            ctx = None
            if self.ris.tls:
                ctx = ssl.create_default_context(cafile=self.ris.tls_ca or None)
            self._client = MllpClient(self.ris.host, self.ris.port, ssl_context=ctx, timeout=self.ris.timeout)
        return self._client

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.send_due()
            except Exception:  # database unavailable: try again later
                log.exception("outbox pass failed")
                sent = 0
            if not sent:
                self._wake.wait(self.poll)
                self._wake.clear()

    def send_due(self) -> int:
        """Send what is due, oldest first; stops at the first message the RIS did not accept (order
        is kept). Returns how many were acknowledged."""
        outbox = self.hub.outbox
        done = 0
        while not self._stop.is_set():
            item = outbox.claim(DESTINATION, lease=self.ris.timeout + 30)
            if item is None:
                return done
            try:
                code = ack_code(self._connect().send(item.payload))
            except (OSError, ConnectionError) as exc:
                code, error = "", f"{type(exc).__name__}"
                if self._client is not None:
                    self._client.close()
                    self._client = None
            else:
                error = f"MSA-1 {code or 'missing'}"
            if code in ("AA", "CA"):
                outbox.sent(item.pk)
                log.info("status message %s acknowledged by the RIS", item.control_id)
                done += 1
                continue
            delay = min(self.ris.retry_max, self.ris.retry_initial * 2 ** max(item.attempts - 1, 0))
            outbox.retry(item.pk, error, delay)
            log.warning("status message %s not accepted (%s): retry in %.1f s (attempt %d)", item.control_id,
                        error, delay, item.attempts)
            return done
        return done
