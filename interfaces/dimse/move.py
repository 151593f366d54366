"""C-MOVE SCP, Patient Root and Study Root (PS3.4 C.4.2): the named instances go as C-STORE
sub-operations on a new association to a Move Destination declared in ``[modalities]``.

pynetdicom runs the DIMSE side (pending responses with the Remaining/Completed/Failed/Warning counts
after each sub-operation, the final Success 0x0000, Warning 0xB000 or Failure 0xA702 with the Failed
SOP Instance UID List, C-CANCEL -> 0xFE00; PS3.4 C.4.2.1.4-C.4.2.1.6). It opens the sub-association
with ``ae.associate``; :func:`install_link_hook` lets the handler hand it a :class:`DestinationLink`
instead, which

* opens the real association itself, proposing each SOP class in its stored transfer syntax (and
  Explicit/Implicit VR Little Endian for uncompressed data), with TCP_NODELAY on the socket;
* sends each blob as stored (:class:`~interfaces.dimse.retrieve.SubOperations`), Move Originator AE
  Title being the requester's (PS3.7 9.1.1.1);
* when the destination cannot be reached, lets the handler answer 0xA702 with every sub-operation
  counted as failed (as DCMTK's dcmqrscp) instead of pynetdicom's 0xA801 "destination unknown";
* needs no network at all when the request is refused (0x0124 not authorized, 0xA900 bad
  identifier): pynetdicom's protocol only reports a status after the sub-association.

An unknown Move Destination AE title is 0xA801 (PS3.4 C.4.2.1.5).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from hub.app import Hub
from hub.services.modalities import ModalityDirectory
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status
from interfaces.dimse.retrieve import (
    CANCEL,
    PENDING,
    UNABLE,
    WARNING,
    PendingThrottle,
    SubOperations,
    failed_list,
    matching_items,
)

log = logging.getLogger(__name__)

LINK = "rishub_link"  # the ae.associate keyword that carries a DestinationLink


def _nodelay(event: Event) -> None:
    """EVT_CONN_OPEN of the sub-association: small DIMSE messages must not wait on Nagle."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    except (AttributeError, OSError):
        pass


class DestinationLink:
    """Stands in for the sub-association of pynetdicom's C-MOVE SCP (it uses ``is_established``,
    ``send_c_store`` and ``release``). Always "established", so that pynetdicom goes on to ask the
    handler for its statuses; a link that could not connect fails every send."""

    def __init__(self, sub_ops: SubOperations | None, contexts: list[PresentationContext] | None = None) -> None:
        self.sub_ops = sub_ops  # None: a refusal, nothing will be sent
        self.contexts = contexts or []
        self.assoc: Association | None = None
        self.is_established = True

    def connect(self, associate: Callable[..., Association], addr: str, port: int, ae_title: str) -> DestinationLink:
        if self.sub_ops is None or not self.contexts:
            return self
        try:
            assoc = associate(
                addr, port, contexts=self.contexts, ae_title=ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)]
            )
        except Exception:  # noqa: BLE001 - an unreachable destination fails the sub-operations
            log.exception("C-MOVE: cannot open the association to %s", ae_title)
            return self
        if assoc.is_established:
            self.assoc = assoc
        else:  # rejected or unreachable: pynetdicom leaves closing the socket to the caller
            with contextlib.suppress(Exception):
                assoc.dul.socket.close()  # type: ignore[union-attr]
        return self

    @property
    def connected(self) -> bool:
        return self.assoc is not None

    @property
    def lost(self) -> bool:
        return self.assoc is not None and (not self.assoc.is_established or bool(self.sub_ops and self.sub_ops.broken))

    def send_c_store(self, dataset: Dataset, **kwargs: Any) -> Dataset:
        assoc = self.assoc
        if assoc is None or self.sub_ops is None or not assoc.is_established:
            raise ConnectionError("no association with the move destination")
        return self.sub_ops.send(assoc.send_c_store, assoc, dataset, **kwargs)

    def release(self) -> None:
        if self.sub_ops is not None:
            self.sub_ops.close()
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


def install_link_hook(ae: AE) -> None:
    """Let ``ae.associate(..., rishub_link=link)`` (pynetdicom's C-MOVE SCP passes the handler's
    keywords through) return ``link`` connected; any other call is ``AE.associate`` unchanged."""
    if getattr(ae, "_rishub_link_hook", False):
        return
    plain = ae.associate

    def associate(addr: Any, port: int, *args: Any, **kwargs: Any) -> Any:
        link = kwargs.pop(LINK, None)
        if link is None:
            return plain(addr, port, *args, **kwargs)
        return link.connect(plain, addr, port, str(kwargs.get("ae_title", "ANY-SCP")))

    ae.associate = associate  # type: ignore[method-assign]
    ae._rishub_link_hook = True  # type: ignore[attr-defined]


def _refuse(code: int, comment: str) -> Iterator[Any]:
    """pynetdicom reports a handler's status only after the sub-association: hand it an idle link."""
    yield ("127.0.0.1", 0, {LINK: DestinationLink(None)})
    yield 1
    yield (status(code, comment), None)


def make_move_handler(hub: Hub, directory: ModalityDirectory, ae: AE):  # noqa: ANN201
    install_link_hook(ae)

    def handle_move(event: Event) -> Iterator[Any]:
        origin = origin_of(event)
        if not directory.allows(origin.remote_aet, origin.remote_ip, "move"):
            log.warning("C-MOVE refused: %s may not move", origin.describe())
            yield from _refuse(NOT_AUTHORIZED, "Refused: not authorized")
            return
        destination = str(event.request.MoveDestination or "").strip()
        nodes = directory.by_aet(destination)
        if not nodes:
            log.warning("C-MOVE refused (%s): move destination %r is not in [modalities]", origin.describe(),
                        destination)
            yield (None, None)  # pynetdicom answers 0xA801 Move Destination unknown
            return
        items, refusal = matching_items(hub, event, origin, "C-MOVE")
        if refusal is not None:
            yield from _refuse(*refusal)
            return
        node = nodes[0]
        sub_ops = SubOperations(items, originator_aet=origin.remote_aet)
        link = DestinationLink(sub_ops, sub_ops.contexts())
        yield (node.host, node.port, {LINK: link})
        yield len(items)  # 0: pynetdicom answers Success with zero sub-operations, no association
        if not link.connected:
            log.warning("C-MOVE (%s): cannot reach %s at %s:%d", origin.describe(), destination, node.host, node.port)
            yield (status(UNABLE, "Move destination unreachable"), failed_list(sub_ops.remaining_after(0)))
            return
        throttle = PendingThrottle(event.assoc)
        try:
            for done, item in enumerate(items):
                if event.is_cancelled:
                    log.info("C-MOVE to %s cancelled: %s", destination, sub_ops.summary())
                    yield (CANCEL, None)
                    return
                if link.lost:
                    log.warning("C-MOVE to %s: association lost: %s", destination, sub_ops.summary())
                    code = WARNING if sub_ops.completed or sub_ops.warnings else UNABLE
                    yield (status(code, "Association with the move destination lost"),
                           failed_list(sub_ops.failed + sub_ops.remaining_after(done)))
                    return
                yield (PENDING, sub_ops.placeholder(item))
        finally:
            throttle.close()
        log.info("C-MOVE to %s (%s): %s", destination, origin.describe(), sub_ops.summary())

    return handle_move
