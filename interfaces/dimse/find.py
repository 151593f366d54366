"""C-FIND SCP, Patient Root and Study Root (PS3.4 C.4.1): the identifier becomes the hub's query
model, results stream back as pending responses; C-CANCEL stops the stream (0xFE00)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

from hub.app import Hub
from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from mappings.dicom_query import identifier_to_query, record_to_identifier, response_charset, text_values

log = logging.getLogger(__name__)

PENDING, CANCEL = 0xFF00, 0xFE00


def _failure(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]
    return ds


def make_find_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_find(event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        requestor = event.assoc.requestor
        who = f"aet={requestor.ae_title} ip={requestor.address}"
        if not directory.allows(requestor.ae_title, requestor.address, "find"):
            log.warning("C-FIND refused: %s may not query", who)
            yield _failure(0x0124, "Refused: not authorized"), None
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
            yield _failure(exc.dimse_status, exc.message), None
            return
        except Exception:  # an identifier pydicom cannot decode
            log.exception("C-FIND identifier unreadable (%s)", who)
            yield _failure(0xC002, "Identifier cannot be decoded"), None
            return
        requested_cs = identifier.get("SpecificCharacterSet")
        count = 0
        try:
            for record in hub.query.find(query, requested):
                if event.is_cancelled:
                    log.info("C-FIND cancelled by %s after %d matches", who, count)
                    yield CANCEL, None
                    return
                answer = record_to_identifier(record, requested, query.level)
                charset = response_charset(requested_cs, text_values(answer))
                if charset:
                    answer.SpecificCharacterSet = charset
                count += 1
                yield PENDING, answer
        except HubError as exc:
            yield _failure(exc.dimse_status, exc.message), None
            return
        except Exception:
            log.exception("C-FIND failed (%s)", who)
            yield _failure(0xA700, "Out of resources"), None
            return
        log.info("C-FIND %s level %s: %d matches", who, query.level.name, count)

    return handle_find
