"""C-STORE-RQ of a stored file in a few socket writes (PS3.7 9.3.1.1, E.1; PS3.8 9.3.5, E.2).

pynetdicom fragments a data set into P-DATA-TF PDUs of the peer's maximum length (16 KiB for DCMTK
by default) and hands each one, as a separate primitive, to the DUL thread, which turns it into a
PDU object, encodes it and writes it; the command set is encoded by pydicom. For a 512 KiB CT slice
that is about 35 thread hand-offs and a millisecond of CPU. :class:`BulkChannel` encodes the command
set itself (PS3.7 E.1: group 0000, Implicit VR Little Endian), cuts the file's data set into the
same PDUs (bytes unchanged) and queues them to the DUL as one marker primitive per few MiB; the DUL
thread, still the association's only writer and in queue order, writes the pre-encoded bytes when it
meets the marker. Responses are read by pynetdicom as usual.

The channel is installed on one association for one retrieve and removed afterwards
(``dul._send`` is shadowed on that instance only). On an association whose reactor runs in its own
thread (the C-MOVE sub-association) the reactor is parked for the whole retrieve, and parked for
certain (blocked on its checkpoint), not just flagged as paused: pynetdicom's per-call pause can let
a reactor that was slow to wake take the C-STORE response off the DIMSE queue, which then waits for
the DIMSE timeout. (On a C-GET the reactor is the thread sending, so nothing can race.)
"""

from __future__ import annotations

import collections
import os
import queue
import struct
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.dsutils import split_dataset
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

BATCH = 4 << 20  # bytes of PDUs per marker: bounds the memory one send holds
_PDU = struct.Struct(">BBLLBB")  # P-DATA-TF type, reserved, length; PDV item length, context id, control header
_ELEM = struct.Struct("<HHL")  # Implicit VR Little Endian element header (PS3.5 7.1.3)
_US = struct.Struct("<H")
# PS3.8 E.2 message control header: bit 0 command, bit 1 last fragment.
DATA, DATA_LAST, COMMAND_LAST = 0x00, 0x02, 0x03


def dataset_offset(f: BinaryIO, path: Path) -> int:
    """Where the data set starts in the Part 10 file ``f`` (PS3.10 7.1): preamble, ``DICM``, then the
    File Meta group whose length (0002,0000) says where it ends; pynetdicom's parser when unusual."""
    f.seek(0)
    head = f.read(144)
    if len(head) == 144 and head[128:132] == b"DICM" and head[132:140] == b"\x02\x00\x00\x00UL\x04\x00":
        return 144 + struct.unpack("<L", head[140:144])[0]
    return split_dataset(path)[1]


def _even(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def c_store_rq_command(
    sop_class_uid: str,
    sop_instance_uid: str,
    msg_id: int,
    *,
    priority: int = 2,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> bytes:
    """The C-STORE-RQ command set (PS3.7 9.3.1.1, Table 9.3-1) with its group length, elements in
    tag order; a data set follows (Command Data Set Type 0x0001, as pynetdicom sends it)."""
    elements = [
        (0x0002, _even(sop_class_uid.encode("ascii"), b"\x00")),  # Affected SOP Class UID
        (0x0100, _US.pack(0x0001)),  # Command Field: C-STORE-RQ
        (0x0110, _US.pack(msg_id)),  # Message ID
        (0x0700, _US.pack(priority)),  # Priority
        (0x0800, _US.pack(0x0001)),  # Command Data Set Type: present
        (0x1000, _even(sop_instance_uid.encode("ascii"), b"\x00")),  # Affected SOP Instance UID
    ]
    if originator_aet:
        elements.append((0x1030, _even(originator_aet.strip().encode("ascii"), b" ")))  # Move Originator AE Title
    if originator_id is not None:
        elements.append((0x1031, _US.pack(originator_id)))  # Move Originator Message ID
    body = b"".join(_ELEM.pack(0x0000, elem, len(value)) + value for elem, value in elements)
    return _ELEM.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + body


def c_find_rsp_command(sop_class_uid: str, msg_id: int, status: int = 0xFF00) -> bytes:
    """A C-FIND-RSP command set with an identifier (PS3.7 9.3.2.2, Table 9.3-3), e.g. Pending."""
    elements = [
        (0x0002, _even(sop_class_uid.encode("ascii"), b"\x00")),  # Affected SOP Class UID
        (0x0100, _US.pack(0x8020)),  # Command Field: C-FIND-RSP
        (0x0120, _US.pack(msg_id)),  # Message ID Being Responded To
        (0x0800, _US.pack(0x0001)),  # Command Data Set Type: present
        (0x0900, _US.pack(status)),  # Status
    ]
    body = b"".join(_ELEM.pack(0x0000, elem, len(value)) + value for elem, value in elements)
    return _ELEM.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + body


class BulkChannel:
    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.broken = False  # no response came: the association is of no further use
        self._payloads: collections.deque[bytes] = collections.deque()
        self._plain_send = self.dul._send
        self.dul._send = self._send  # type: ignore[method-assign]
        self._parked = threading.current_thread() is not assoc
        if self._parked:
            self._park()

    def _park(self) -> None:
        checkpoint = self.assoc._reactor_checkpoint
        checkpoint.clear()
        waiters = getattr(getattr(checkpoint, "_cond", None), "_waiters", None)  # CPython's Event internals
        deadline = time.monotonic() + 5
        while self.assoc.is_established and time.monotonic() < deadline:
            if (len(waiters) > 0) if waiters is not None else self.assoc._is_paused:
                return
            time.sleep(0.0001)

    def close(self) -> None:
        """Let the reactor run again and give the DUL its own ``_send`` back (not while a payload
        is still queued: it would then send an empty P-DATA-TF)."""
        if self._parked:
            self._parked = False
            self.assoc._reactor_checkpoint.set()
        if not self._payloads:
            vars(self.dul).pop("_send", None)

    def _send(self, pdu: Any) -> None:
        """The DUL's ``_send`` (its thread): a marker writes the next queued payload."""
        if isinstance(pdu, P_DATA_TF) and not pdu.presentation_data_value_items and self._payloads:
            self.dul.socket.send(self._payloads.popleft())  # type: ignore[union-attr]
            return
        self._plain_send(pdu)

    def send_dataset(self, plain: Any, dataset: Dataset, **kwargs: Any) -> Dataset:
        """pynetdicom's own ``send_c_store`` (for a re-encoded data set); it un-pauses the reactor
        when done, so park it again."""
        result = plain(dataset, **kwargs)
        if self._parked:
            self._park()
        return result

    def send_c_store(
        self,
        path: Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        context_id: int,
        *,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        """Send the data set of the Part 10 file ``path`` on the accepted context ``context_id``
        (whose transfer syntax must be the file's); returns the response status data set, empty
        when no response came (the association is then aborted, as by pynetdicom)."""
        assoc = self.assoc
        if self.broken or not assoc.is_established:
            raise ConnectionError("the association is lost")
        command = c_store_rq_command(
            sop_class_uid, sop_instance_uid, msg_id,
            priority=priority, originator_aet=originator_aet, originator_id=originator_id,
        )
        max_pdu = assoc.dimse.maximum_pdu_size
        with open(path, "rb") as f:
            offset = dataset_offset(f, path)
            length = os.fstat(f.fileno()).st_size - offset
            if length <= 0:
                raise ValueError("the file holds no data set")
            f.seek(offset)
            fragment = max_pdu - 6 if max_pdu else length  # PS3.8 9.3.5: PDV items within the maximum length
            if len(command) > fragment:
                raise ValueError("the peer's maximum PDU length cannot hold the command set")
            parts = [self._pdv(context_id, COMMAND_LAST, command)]
            per_batch = max(1, BATCH // fragment)
            sent = 0
            while sent < length:
                chunk = memoryview(f.read(min(per_batch * fragment, length - sent)))
                if not chunk:
                    raise ValueError("the file is shorter than its size")
                for start in range(0, len(chunk), fragment):
                    piece: bytes | memoryview = chunk[start : start + fragment]
                    control = DATA_LAST if sent + start + len(piece) >= length else DATA
                    if control == DATA_LAST and length % 2:
                        piece = bytes(piece) + b"\x00"  # PS3.5 A.5: a deflated stream is NUL-padded to even length
                    parts.append(_PDU.pack(0x04, 0, len(piece) + 6, len(piece) + 2, context_id, control))
                    parts.append(piece)
                sent += len(chunk)
                self._queue(b"".join(parts))
                parts = []
        rsp = self._response()
        if rsp is None:
            self.broken = True
            if self._parked:
                self.close()
            assoc._handle_no_response()  # aborts on a timeout, as pynetdicom
            return Dataset()
        return assoc._check_received_status(rsp)

    def message_bytes(self, context_id: int, command: bytes, dataset: bytes) -> bytes:
        """A whole DIMSE message (command, then data set fragments) as P-DATA-TF PDUs."""
        max_pdu = self.assoc.dimse.maximum_pdu_size
        fragment = max_pdu - 6 if max_pdu else max(len(dataset), 1)
        if len(command) > fragment:
            raise ValueError("the peer's maximum PDU length cannot hold the command set")
        parts = [self._pdv(context_id, COMMAND_LAST, command)]
        for start in range(0, len(dataset), fragment):
            piece = dataset[start : start + fragment]
            last = start + len(piece) >= len(dataset)
            parts.append(self._pdv(context_id, DATA_LAST if last else DATA, piece))
        return b"".join(parts)

    def queue_bytes(self, payload: bytes) -> None:
        """Queue pre-encoded PDUs for the DUL thread to write, in order with pynetdicom's own."""
        self._queue(payload)

    @staticmethod
    def _pdv(context_id: int, control: int, value: bytes) -> bytes:
        """One P-DATA-TF PDU holding one PDV item (PS3.8 9.3.5, E.2)."""
        return _PDU.pack(0x04, 0, len(value) + 6, len(value) + 2, context_id, control) + value

    def _response(self) -> Any:
        """The next DIMSE message, None on the DIMSE timeout or when the association went down
        (the parked reactor would not notice an A-ABORT)."""
        assoc = self.assoc
        timeout = assoc.dimse_timeout
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            try:
                return assoc.dimse.msg_queue.get(timeout=min(0.25, max(deadline - time.monotonic(), 0.001)))[1]
            except queue.Empty:
                pass
            if assoc.acse.is_aborted() or not self.dul.is_alive() or time.monotonic() >= deadline:
                return None

    def _queue(self, payload: bytes) -> None:
        self._payloads.append(payload)
        self.dul.send_pdu(P_DATA())  # marker: no PDVs (pynetdicom never sends an empty P-DATA)
