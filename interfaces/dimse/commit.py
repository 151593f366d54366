"""Storage Commitment Push Model SCP (PS3.4 Annex J; SOP Class 1.2.840.10008.1.20.1).

The requester sends an N-ACTION (Action Type ID 1) to the well-known SOP Instance
1.2.840.10008.1.20.1.1 with a Transaction UID and the Referenced SOP Sequence (PS3.4 J.3.2,
Table J.3-1). The N-ACTION response only says that the request was accepted (PS3.4 J.3.2.1.3);
the outcome follows in an N-EVENT-REPORT (PS3.4 J.3.3, Table J.3-2): Event Type ID 1 when every
referenced instance is committed, 2 with a Failed SOP Sequence otherwise, same Transaction UID.

The report is computed and sent by a background thread once the N-ACTION response has gone out
(the handler watches ``EVT_DIMSE_SENT`` for it):

1. on the same association, if the requester keeps it open past a short grace period and answers
   the N-EVENT-REPORT with Success (PS3.4 J.3.3.1.2 Note 1 allows the attempt; the requester is
   free to release right after the N-ACTION response, so it is only an attempt);
2. otherwise on a new association to the requester, found by its AE title in ``[modalities]``,
   on which the hub proposes the SCP role by SCP/SCU Role Selection (PS3.4 J.3.3.1.2 Note 1,
   J.3.3.1.3 Note; PS3.7 D.3.3.4), as every SCU must accept (PS3.4 J.3.3.1.3).

A requester that cannot be reached is logged and its report kept in :attr:`CommitHandler.undelivered`.
Storage commitment is tied to the ``store`` permission of the calling node (as in Orthanc).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import N_ACTION_RSP
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_RELEASE

from hub.app import Hub
from hub.services.commitment import CommitmentResult
from hub.services.modalities import ModalityDirectory
from hub.settings import Modality

log = logging.getLogger(__name__)

PUSH_MODEL = "1.2.840.10008.1.20.1"
PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"  # well-known SOP Instance (PS3.4 J.3.5)
REQUEST_STORAGE_COMMITMENT = 1  # Action Type ID (PS3.4 J.3.2)

# N-ACTION statuses (PS3.4 J.3.2.1.3, PS3.7 C.5 and 10.1.4.1.10)
SUCCESS = 0x0000
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124

SAME_ASSOCIATION_GRACE = 0.5  # s after the N-ACTION response: a requester that releases does so by then
SAME_ASSOCIATION_TIMEOUT = 10  # s to wait for the N-EVENT-REPORT response on the N-ACTION's association
RESPONSE_SENT_TIMEOUT = 30  # s to wait for pynetdicom to send the N-ACTION response
UNDELIVERED_KEPT = 100


@dataclass(frozen=True)
class CommitRequest:
    """A validated Storage Commitment Request (PS3.4 J.3.2, Table J.3-1)."""

    transaction_uid: str
    refs: list[tuple[str, str]]  # (Referenced SOP Class UID, Referenced SOP Instance UID)


@dataclass(frozen=True)
class Report:
    """A computed Storage Commitment Result not yet delivered."""

    requester_aet: str
    transaction_uid: str
    result: CommitmentResult


def _uid(value: Any) -> str:
    return str(value or "").strip(" \x00")


def parse_request(info: Dataset | None) -> CommitRequest | None:
    """Action Information -> request, or ``None`` when a Type 1 attribute is missing or empty
    (Transaction UID, Referenced SOP Sequence and both UIDs of every item; PS3.4 Table J.3-1)."""
    if info is None:
        return None
    transaction_uid = _uid(info.get("TransactionUID"))
    items = info.get("ReferencedSOPSequence")
    if not transaction_uid or not items:
        return None
    refs: list[tuple[str, str]] = []
    for item in items:
        sop_class, sop_instance = _uid(item.get("ReferencedSOPClassUID")), _uid(item.get("ReferencedSOPInstanceUID"))
        if not sop_class or not sop_instance:
            return None
        refs.append((sop_class, sop_instance))
    return CommitRequest(transaction_uid, refs)


def event_information(transaction_uid: str, result: CommitmentResult) -> Dataset:
    """N-EVENT-REPORT Event Information (PS3.4 J.3.3, Table J.3-2)."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if result.committed:
        ds.ReferencedSOPSequence = [_item(r.sop_class_uid, r.sop_instance_uid) for r in result.committed]
    if result.failed:
        failed = []
        for f in result.failed:
            item = _item(f.sop_class_uid, f.sop_instance_uid)
            item.FailureReason = f.reason
            failed.append(item)
        ds.FailedSOPSequence = failed
    return ds


def _item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


class CommitHandler:
    """The ``EVT_N_ACTION`` handler; each accepted request gets its own report thread."""

    def __init__(self, hub: Hub, directory: ModalityDirectory, ae: AE) -> None:
        self.hub = hub
        self.directory = directory
        self.ae = ae
        self.undelivered: deque[Report] = deque(maxlen=UNDELIVERED_KEPT)
        self.grace = SAME_ASSOCIATION_GRACE
        self.same_association_timeout = SAME_ASSOCIATION_TIMEOUT

    # ------------------------------------------------------------------ N-ACTION (PS3.4 J.3.2)
    def __call__(self, event: Event) -> tuple[int, None]:
        """pynetdicom wants (status, Action Reply); Storage Commitment has no Action Reply."""
        return self._action(event), None

    def _action(self, event: Event) -> int:
        assoc: Association = event.assoc
        req = event.request
        aet, ip = assoc.requestor.ae_title, assoc.requestor.address
        if _uid(req.RequestedSOPClassUID) != PUSH_MODEL:
            return NO_SUCH_SOP_CLASS
        if _uid(req.RequestedSOPInstanceUID) != PUSH_MODEL_INSTANCE:
            return NO_SUCH_SOP_INSTANCE
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            return NO_SUCH_ACTION
        if not self.directory.allows(aet, ip, "store"):
            log.warning("storage commitment refused: aet=%s ip=%s may not store", aet, ip)
            return NOT_AUTHORIZED
        try:
            request = parse_request(event.action_information)
        except Exception:  # pydicom decodes lazily: a malformed data set fails here
            log.warning("storage commitment from aet=%s: undecodable Action Information", aet)
            return INVALID_ARGUMENT_VALUE
        if request is None:
            log.warning("storage commitment from aet=%s: Transaction UID or Referenced SOP Sequence missing", aet)
            return INVALID_ARGUMENT_VALUE

        sent = threading.Event()
        message_id = req.MessageID

        def on_sent(sent_event: Event) -> None:
            msg = sent_event.message
            if isinstance(msg, N_ACTION_RSP) and msg.command_set.get("MessageIDBeingRespondedTo") == message_id:
                sent.set()

        assoc.bind(evt.EVT_DIMSE_SENT, on_sent)
        threading.Thread(
            target=self._report, args=(assoc, on_sent, sent, aet, ip, request), name="stgcmt-report", daemon=True
        ).start()
        log.info("storage commitment request from aet=%s: %d instances", aet, len(request.refs))
        return SUCCESS

    # ------------------------------------------------------------------ N-EVENT-REPORT (PS3.4 J.3.3)
    def _report(
        self,
        assoc: Association,
        on_sent: Callable[[Event], None],
        sent: threading.Event,
        aet: str,
        ip: str,
        request: CommitRequest,
    ) -> None:
        ok = sent.wait(RESPONSE_SENT_TIMEOUT)
        assoc.unbind(evt.EVT_DIMSE_SENT, on_sent)
        if not ok:  # aborted before the response: the requester does not expect a report (PS3.4 J.3.2.1.2)
            log.warning("storage commitment from aet=%s: N-ACTION response never sent, no report", aet)
            return
        deadline = time.monotonic() + self.grace
        result = self.hub.commitment.check(request.refs)
        log.info(
            "storage commitment for aet=%s: %d committed, %d failed", aet, len(result.committed), len(result.failed)
        )
        delivered = False
        try:
            info = event_information(request.transaction_uid, result)
            delivered = self._send_same(assoc, info, result.event_type, deadline) or self._send_new(
                aet, ip, info, result.event_type
            )
        except Exception:
            log.exception("storage commitment report for aet=%s failed", aet)
        if not delivered:
            self.undelivered.append(Report(aet, request.transaction_uid, result))

    def _send_same(self, assoc: Association, info: Dataset, event_type: int, deadline: float) -> bool:
        """Try the N-ACTION's association, if the requester kept it open (PS3.4 J.3.3.1.2 Note 1)."""
        while time.monotonic() < deadline and _usable(assoc):
            time.sleep(0.02)
        if not _usable(assoc):
            return False
        saved = assoc.dimse_timeout
        assoc.dimse_timeout = min(saved or self.same_association_timeout, self.same_association_timeout)
        try:
            status, _ = assoc.send_n_event_report(info, event_type, PUSH_MODEL, PUSH_MODEL_INSTANCE)
        except Exception as exc:  # released or aborted meanwhile
            log.info("storage commitment report on the same association failed (%s); opening a new one", exc)
            return False
        finally:
            assoc.dimse_timeout = saved
        code = getattr(status, "Status", None)
        if code == SUCCESS:
            log.info("storage commitment reported on the same association to aet=%s", assoc.requestor.ae_title)
            return True
        log.info(
            "storage commitment report on the same association answered %s; opening a new one",
            "nothing" if code is None else f"0x{code:04X}",
        )
        return False

    def _send_new(self, aet: str, ip: str, info: Dataset, event_type: int) -> bool:
        """Open an association to the requester and send the report as SCP (PS3.4 J.3.3.1.3)."""
        modality = self._destination(aet, ip)
        if modality is None:
            log.warning(
                "storage commitment: requester aet=%s is not in [modalities], its report cannot be delivered", aet
            )
            return False
        contexts = [build_context(PUSH_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
        role = build_role(PUSH_MODEL, scu_role=False, scp_role=True)
        try:
            assoc = self.ae.associate(modality.host, modality.port, contexts, modality.aet, ext_neg=[role])
        except Exception as exc:
            log.warning("storage commitment: cannot associate with aet=%s (%s)", aet, exc)
            return False
        if not assoc.is_established:
            log.warning("storage commitment: association to aet=%s at %s:%d refused or failed",
                        aet, modality.host, modality.port)
            return False
        try:
            status, _ = assoc.send_n_event_report(info, event_type, PUSH_MODEL, PUSH_MODEL_INSTANCE)
        except Exception as exc:
            log.warning("storage commitment: report to aet=%s failed (%s)", aet, exc)
            assoc.abort()
            return False
        code = getattr(status, "Status", None)
        if assoc.is_established:
            assoc.release()
        if code == SUCCESS:
            log.info("storage commitment reported on a new association to aet=%s", aet)
            return True
        log.warning("storage commitment: aet=%s answered the report with %s", aet,
                    "nothing" if code is None else f"0x{code:04X}")
        return False

    def _destination(self, aet: str, ip: str) -> Modality | None:
        m = self.directory.match(aet, ip)
        if m is not None:
            return m
        candidates = self.directory.by_aet(aet)
        return candidates[0] if candidates else None


def _usable(assoc: Association) -> bool:
    """Established, not releasing, and the hub acts as SCP of the Push Model on it."""
    if not assoc.is_established:
        return False
    pending = assoc.dul.peek_next_pdu()
    if isinstance(pending, A_RELEASE) and pending.result is None:
        return False
    return any(cx.abstract_syntax == PUSH_MODEL and cx.as_scp for cx in assoc.accepted_contexts)


def make_commit_handler(hub: Hub, directory: ModalityDirectory, ae: AE) -> CommitHandler:
    return CommitHandler(hub, directory, ae)
