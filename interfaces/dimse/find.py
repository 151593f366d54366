"""C-FIND SCP, Patient Root and Study Root (PS3.4 C.4.1): the identifier becomes the hub's query
model, results stream back as pending responses; C-CANCEL stops the stream (0xFE00).

Pending responses skip pynetdicom's per-message encoding (~0.3 ms each in Python): their command set
is the same for the whole query, so it is encoded once, and each identifier is written straight
into P-DATA-TF PDUs that the association's DUL thread sends in order (:mod:`interfaces.dimse.bulk`);
the final status still goes through pynetdicom. Answers are flushed in small batches, the first at
once. Identifiers are written straight to bytes (:mod:`mappings.dicom_find_encode`) unless they need
a character set or a VR that only the pydicom path handles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode
from pynetdicom.events import Event
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from hub.app import Hub
from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from interfaces.dimse.bulk import BulkChannel, c_find_rsp_command
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status
from mappings.dicom_find_encode import record_to_identifier_bytes
from mappings.dicom_query import identifier_to_query, record_to_identifier, response_charset, text_values

log = logging.getLogger(__name__)

PENDING, CANCEL = 0xFF00, 0xFE00
BATCH = 32  # pending responses per write after the first


class PendingWriter:
    """Writes Pending C-FIND-RSP messages (PS3.7 9.3.2.2) for one query on its association."""

    def __init__(self, event: Event) -> None:
        context = event.context
        self.context_id = context.context_id
        ts = context.transfer_syntax
        self.implicit = ts == "1.2.840.10008.1.2"
        self.little = ts != "1.2.840.10008.1.2.2"
        self.command = c_find_rsp_command(str(event.request.AffectedSOPClassUID), event.request.MessageID, PENDING)
        self.channel = BulkChannel(event.assoc)
        self.buffer: list[bytes] = []
        self.sent = 0

    def add(self, identifier: Dataset) -> None:
        data = encode(identifier, self.implicit, self.little)
        if data is None:
            raise ValueError("identifier cannot be encoded")
        self.add_bytes(data)

    def add_bytes(self, data: bytes) -> None:
        """Queue one identifier already encoded in the context's transfer syntax."""
        self.buffer.append(self.channel.message_bytes(self.context_id, self.command, data))
        if self.sent == 0 or len(self.buffer) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.channel.queue_bytes(b"".join(self.buffer))
            self.sent += len(self.buffer)
            self.buffer = []

    def close(self) -> None:
        self.flush()
        self.channel.close()


def make_find_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_find(event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        origin = origin_of(event)
        who = origin.describe()
        if not directory.allows(origin.remote_aet, origin.remote_ip, "find"):
            log.warning("C-FIND refused: %s may not query", who)
            yield status(NOT_AUTHORIZED, "Refused: not authorized"), None
            return
        patient_root = event.request.AffectedSOPClassUID == PatientRootQueryRetrieveInformationModelFind
        root = "patient" if patient_root else "study"
        try:
            identifier = event.identifier
            query, requested = identifier_to_query(
                identifier, root=root, case_insensitive_names=hub.settings.dicom.case_insensitive_names
            )
        except HubError as exc:
            log.warning("C-FIND rejected (%s): %s", who, exc.message)
            yield status(exc.dimse_status, exc.message), None
            return
        except Exception:  # an identifier pydicom cannot decode
            log.exception("C-FIND identifier unreadable (%s)", who)
            yield status(0xC002, "Identifier cannot be decoded"), None
            return
        requested_cs = identifier.get("SpecificCharacterSet")
        count = 0
        writer = PendingWriter(event)
        try:
            for record in hub.query.find(query, requested):
                if event.is_cancelled:
                    writer.close()
                    log.info("C-FIND cancelled by %s after %d matches", who, count)
                    yield CANCEL, None
                    return
                fast = (
                    record_to_identifier_bytes(record, requested, query.level, implicit=writer.implicit)
                    if writer.little
                    else None
                )
                if fast is not None:
                    writer.add_bytes(fast)
                else:
                    answer = record_to_identifier(record, requested, query.level)
                    charset = response_charset(requested_cs, text_values(answer))
                    if charset:
                        answer.SpecificCharacterSet = charset
                    writer.add(answer)
                count += 1
        except HubError as exc:
            writer.close()
            yield status(exc.dimse_status, exc.message), None
            return
        except Exception:
            writer.close()
            log.exception("C-FIND failed (%s)", who)
            yield status(0xA700, "Out of resources"), None
            return
        writer.close()
        log.info("C-FIND %s level %s: %d matches", who, query.level.name, count)

    return handle_find
