"""Pieces every DIMSE handler shares: who is calling, and a status with a comment."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from hub.domain.origin import Origin

NOT_AUTHORIZED = 0x0124  # Refused: not authorized (PS3.7 C.5.17)


def origin_of(event: Event) -> Origin:
    """The requester of the event's association, as recorded with what it stores or asks."""
    assoc = event.assoc
    return Origin(
        "dimse",
        remote_aet=assoc.requestor.ae_title,
        remote_ip=assoc.requestor.address,
        called_aet=assoc.acceptor.ae_title,
    )


def status(code: int, comment: str = "") -> Dataset:
    """A response status data set; the Error Comment (LO, PS3.7 C.4) never carries attribute values."""
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds
