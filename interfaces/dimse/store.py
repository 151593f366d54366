"""C-STORE SCP (PS3.4 B.2): the received data set, streamed to a file by pynetdicom, goes through
the single ingest path; the response is sent only after blob and index are durable."""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from hub.app import Hub
from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status

log = logging.getLogger(__name__)


def make_store_handler(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    def handle_store(event: Event) -> int | Dataset:
        req = event.request
        origin = origin_of(event)
        if not directory.allows(origin.remote_aet, origin.remote_ip, "store"):
            log.warning("C-STORE refused: %s may not store", origin.describe())
            return status(NOT_AUTHORIZED, "Refused: not authorized")
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
            return status(exc.dimse_status, exc.message)
        except Exception:
            log.exception("C-STORE failed (%s)", origin.describe())
            return status(0xA700, "Out of resources")
        return 0x0000

    return handle_store
