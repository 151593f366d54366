"""Modality Performed Procedure Step SCP (PS3.4 Annex F; SOP Class 1.2.840.10008.3.1.2.3.3):
N-CREATE and N-SET handlers over ``hub.services.mpps``.

Statuses (PS3.4 F.7.2.1.2 / F.7.2.2.2, PS3.7 Annex C): 0x0120 Missing Attribute and 0x0121
Missing Attribute Value (with the Attribute Identifier List), 0x0106 Invalid Attribute Value,
0x0111 Duplicate SOP Instance, 0x0112 No Such SOP Instance, 0x0110 Processing Failure with Error ID
0xA710 once the step is COMPLETED or DISCONTINUED (dcm4che ``BasicMPPSSCP``), 0x0110 for a database
failure, 0x0124 for a node without the ``store`` permission.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom.events import Event

from hub.app import Hub
from hub.services.modalities import ModalityDirectory
from hub.services.mpps import MppsError
from interfaces.dimse.common import NOT_AUTHORIZED, origin_of, status
from mappings.dicom_json import dataset_to_dicom_json

log = logging.getLogger(__name__)

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
PROCESSING_FAILURE = 0x0110
MAY_NO_LONGER_BE_UPDATED = 0xA710  # Error ID (0000,0902)
NO_SUCH_SOP_CLASS = 0x0118
STATUS_OF = {
    "missing_attribute": 0x0120,
    "missing_value": 0x0121,
    "invalid_value": 0x0106,
    "duplicate_instance": 0x0111,
    "no_such_instance": 0x0112,
    "no_longer_updatable": PROCESSING_FAILURE,
    "unknown_step": PROCESSING_FAILURE,
}


def error_status(exc: MppsError, *, identifier_list: bool = True) -> Dataset:
    """The response status of a refused request, with the offending tags (never values) in the
    Error Comment and, where the response has one (N-SET; pynetdicom's N-CREATE response does not
    carry it), in the Attribute Identifier List (0000,1005)."""
    tags = [Tag(int(t, 16)) for t in exc.tags if t != "00001000"]
    comment = exc.message
    if tags:
        named = " ".join(f"({t.group:04X},{t.element:04X})" for t in tags)
        comment = f"{named} {comment}" if len(named) < 40 else comment
    ds = status(STATUS_OF.get(exc.kind, PROCESSING_FAILURE), comment)
    if exc.kind == "no_longer_updatable":
        ds.ErrorID = MAY_NO_LONGER_BE_UPDATED
    if tags and identifier_list:
        ds.AttributeIdentifierList = tags
    return ds


def _uid(value: object) -> str:
    return str(value or "").strip(" \x00")


def make_mpps_handlers(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    """(N-CREATE handler, N-SET handler); pynetdicom wants ``(status, attribute list)`` from each."""

    def allowed(event: Event) -> bool:
        origin = origin_of(event)
        if directory.allows(origin.remote_aet, origin.remote_ip, "store"):
            return True
        log.warning("MPPS refused: %s may not report procedure steps", origin.describe())
        return False

    def handle_create(event: Event) -> tuple[int | Dataset, Dataset | None]:
        req = event.request
        if _uid(req.AffectedSOPClassUID) != MPPS_SOP_CLASS:
            return NO_SUCH_SOP_CLASS, None
        if not allowed(event):
            return status(NOT_AUTHORIZED, "Refused: not authorized"), None
        try:
            attrs = dataset_to_dicom_json(event.attribute_list)
        except Exception:
            log.warning("MPPS N-CREATE from aet=%s: undecodable attribute list", event.assoc.requestor.ae_title)
            return status(PROCESSING_FAILURE, "Attribute list cannot be decoded"), None
        try:
            hub.mpps.create(_uid(req.AffectedSOPInstanceUID), attrs, event.assoc.requestor.ae_title)
        except MppsError as exc:
            log.warning("MPPS N-CREATE from aet=%s refused: %s", event.assoc.requestor.ae_title, exc.message)
            return error_status(exc, identifier_list=False), None
        except Exception:
            log.exception("MPPS N-CREATE failed")
            return status(PROCESSING_FAILURE, "Processing failure"), None
        return 0x0000, None

    def handle_set(event: Event) -> tuple[int | Dataset, Dataset | None]:
        req = event.request
        if _uid(req.RequestedSOPClassUID) != MPPS_SOP_CLASS:
            return NO_SUCH_SOP_CLASS, None
        if not allowed(event):
            return status(NOT_AUTHORIZED, "Refused: not authorized"), None
        try:
            mods = dataset_to_dicom_json(event.modification_list)
        except Exception:
            log.warning("MPPS N-SET from aet=%s: undecodable modification list", event.assoc.requestor.ae_title)
            return status(PROCESSING_FAILURE, "Modification list cannot be decoded"), None
        try:
            hub.mpps.update(_uid(req.RequestedSOPInstanceUID), mods)
        except MppsError as exc:
            log.warning("MPPS N-SET from aet=%s refused: %s", event.assoc.requestor.ae_title, exc.message)
            return error_status(exc), None
        except Exception:
            log.exception("MPPS N-SET failed")
            return status(PROCESSING_FAILURE, "Processing failure"), None
        return 0x0000, None

    return handle_create, handle_set
