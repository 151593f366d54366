"""C-GET SCP, Patient Root and Study Root (PS3.4 C.4.3): the named instances go back as C-STORE
sub-operations on the requester's own association.

They use the storage presentation contexts the requester proposed with SCP/SCU Role Selection
(PS3.4 C.4.3.1.1, PS3.7 D.3.3.4; the hub's AE accepts the SCP role for every storage class). Each
blob is sent as stored when a context with its transfer syntax was accepted, uncompressed data
otherwise re-encoded in an accepted uncompressed syntax; an instance left without a context is a
failed sub-operation and the final status is Warning 0xB000 (Failure 0xA702 when all failed).
pynetdicom sends the pending responses with the sub-operation counts, the final status and the
Failed SOP Instance UID List, and answers C-CANCEL with 0xFE00 (PS3.4 C.4.3.1.3-C.4.3.1.5).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

from pynetdicom.events import Event

from hub.app import Hub
from hub.services.modalities import ModalityDirectory
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status
from interfaces.dimse.retrieve import (
    CANCEL,
    PENDING,
    PendingThrottle,
    SubOperations,
    matching_items,
)

log = logging.getLogger(__name__)


def _refuse(code: int, comment: str) -> Iterator[Any]:
    yield 1  # pynetdicom answers Success at once for zero sub-operations; a status needs one
    yield (status(code, comment), None)


def make_get_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_get(event: Event) -> Iterator[Any]:
        origin = origin_of(event)
        if not directory.allows(origin.remote_aet, origin.remote_ip, "get"):
            log.warning("C-GET refused: %s may not get", origin.describe())
            yield from _refuse(NOT_AUTHORIZED, "Refused: not authorized")
            return
        items, refusal = matching_items(hub, event, origin, "C-GET")
        if refusal is not None:
            yield from _refuse(*refusal)
            return
        yield len(items)
        if not items:
            return
        assoc = event.assoc
        sub_ops = SubOperations(items)
        # pynetdicom sends each sub-operation with ``assoc.send_c_store(placeholder, msg_id=...)``.
        assoc.send_c_store = functools.partial(sub_ops.send, assoc.send_c_store, assoc)  # type: ignore[method-assign]
        throttle = PendingThrottle(assoc)
        try:
            for item in items:
                if event.is_cancelled:
                    log.info("C-GET cancelled (%s): %s", origin.describe(), sub_ops.summary())
                    vars(assoc).pop("send_c_store", None)
                    sub_ops.close()
                    yield (CANCEL, None)
                    return
                yield (PENDING, sub_ops.placeholder(item))
            log.info("C-GET (%s): %s", origin.describe(), sub_ops.summary())
        finally:
            throttle.close()
            vars(assoc).pop("send_c_store", None)
            sub_ops.close()

    return handle_get
