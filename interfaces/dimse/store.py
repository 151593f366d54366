"""C-STORE SCP (PS3.4 B.2): the received data set, streamed to a file by pynetdicom, goes through
the single ingest path; the response is sent only after blob and index are durable."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from hub.app import Hub
from hub.domain.origin import Origin
from hub.errors import HubError
from hub.services.modalities import ModalityDirectory

log = logging.getLogger(__name__)


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO, PS3.7 C.4.2; never carries attribute values (no PHI)
    return ds


def make_store_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_store(event: Event) -> int | Dataset:
        assoc = event.assoc
        req = event.request
        origin = Origin(
            "dimse",
            remote_aet=assoc.requestor.ae_title,
            remote_ip=assoc.requestor.address,
            called_aet=assoc.acceptor.ae_title,
        )
        if not directory.allows(origin.remote_aet, origin.remote_ip, "store"):
            log.warning("C-STORE refused: %s may not store", origin.describe())
            return _status(0x0124, "Refused: not authorized")
        try:
            hub.ingest.store(
                origin,
                event.dataset_path,
                expected_sop_class_uid=str(req.AffectedSOPClassUID),
                expected_sop_instance_uid=str(req.AffectedSOPInstanceUID),
                consume=True,  # pynetdicom deletes its receive file after this handler
            )
        except HubError as exc:
            log.warning("C-STORE failed (%s): %s [%s]", origin.describe(), exc.message, exc.code)
            return _status(exc.dimse_status, exc.message)
        except Exception:
            log.exception("C-STORE failed (%s)", origin.describe())
            return _status(0xA700, "Out of resources")
        return 0x0000

    return handle_store
