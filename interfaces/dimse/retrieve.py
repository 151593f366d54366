"""What the C-MOVE and C-GET SCPs share (PS3.4 C.4.2, C.4.3): the request's origin and identifier,
response status data sets, and the C-STORE sub-operations that send stored files as they are.

pynetdicom's Query/Retrieve SCP drives the sub-operation loop: the handler yields, per instance, a
placeholder data set (SOP Class and Instance UID only) and pynetdicom hands it to the association's
``send_c_store``. :meth:`SubOperations.send` stands in for that method: it sends the instance's blob
file, data set bytes as stored (:class:`~interfaces.dimse.bulk.BulkChannel`), when the peer accepted
a presentation context with the file's own transfer syntax; otherwise an uncompressed file is decoded
and re-encoded by pynetdicom in an accepted uncompressed syntax (PS3.5 10.1); a compressed one is
never transcoded and that sub-operation fails (counted by pynetdicom, PS3.4 C.4.2.3.1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)

from hub.domain.origin import Origin
from hub.domain.retrieve import RetrieveItem, RetrieveKeys
from hub.errors import HubError
from interfaces.dimse.bulk import BulkChannel
from mappings.dicom_retrieve import identifier_to_retrieve_keys

log = logging.getLogger(__name__)

PATIENT_ROOT = {PatientRootQueryRetrieveInformationModelMove, PatientRootQueryRetrieveInformationModelGet}
# Uncompressed syntaxes pynetdicom re-encodes into one another (explicit <-> implicit VR, deflated ->
# inflated; never across byte orders), and the ones proposed for that.
CONVERTIBLE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian})
FALLBACK = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context ids are the odd numbers 1-255
PENDING = 0xFF00
CANCEL = 0xFE00
WARNING = 0xB000
UNABLE = 0xA702  # Refused: Out of resources - unable to perform sub-operations
UNABLE_TO_MATCH = 0xA701  # Refused: Out of resources - unable to calculate number of matches
# PS3.4 B.2.3, PS3.7 C: C-STORE statuses that mean "stored, with a warning".
STORE_WARNINGS = frozenset({0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007})


def failed_list(uids: Iterable[str]) -> Dataset:
    """The identifier of a Failure/Warning/Cancel response (PS3.4 C.4.2.1.4.2, C.4.3.1.3.2)."""
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = list(uids)
    return ds


def retrieve_keys(event: Event) -> RetrieveKeys:
    """The request identifier's unique keys; ``HubError('invalid_identifier')`` (0xA900) if unusable."""
    root = "patient" if str(event.request.AffectedSOPClassUID) in PATIENT_ROOT else "study"
    try:
        identifier = event.identifier
    except Exception:  # noqa: BLE001 - any undecodable identifier is the requester's error
        raise HubError("invalid_identifier", "the identifier cannot be decoded") from None
    return identifier_to_retrieve_keys(identifier, root=root)


def matching_items(
    hub: Any, event: Event, origin: Origin, verb: str
) -> tuple[list[RetrieveItem], tuple[int, str] | None]:
    """The instances a C-MOVE/C-GET names, or the (status, comment) that refuses it (logged)."""
    try:
        return hub.retrieve.instances(retrieve_keys(event)), None
    except HubError as exc:
        log.warning("%s refused (%s): %s [%s]", verb, origin.describe(), exc.message, exc.code)
        return [], (exc.dimse_status, exc.message)
    except Exception:
        log.exception("%s failed (%s)", verb, origin.describe())
        return [], (UNABLE_TO_MATCH, "Unable to calculate number of matches")


class PendingThrottle:
    """Sends a Pending C-MOVE/C-GET response (with its sub-operation counts) at most every
    ``interval`` seconds instead of after every sub-operation: Pending responses are optional
    (PS3.4 C.4.2.1.5, C.4.3.1.4) and encoding each one in pynetdicom costs ~0.3 ms per instance.
    Installed on the requester's association for one retrieve; Final responses pass unchanged."""

    def __init__(self, assoc: Association, interval: float = 0.25) -> None:
        self.dimse = assoc.dimse
        self.interval = interval
        self._plain = self.dimse.send_msg
        self._last = 0.0
        self.dimse.send_msg = self._send  # type: ignore[method-assign]

    def _send(self, primitive: Any, context_id: int) -> None:
        if getattr(primitive, "Status", None) == 0xFF00 and primitive.__class__.__name__ in ("C_MOVE", "C_GET"):
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
        self._plain(primitive, context_id)

    def close(self) -> None:
        vars(self.dimse).pop("send_msg", None)


class SubOperations:
    """The C-STORE sub-operations of one retrieve and their outcomes."""

    def __init__(self, items: Sequence[RetrieveItem], *, originator_aet: str | None = None) -> None:
        self.items = list(items)
        self._by_uid = {item.sop_instance_uid: item for item in self.items}
        self.originator_aet = originator_aet  # C-MOVE: the requester's AE title (PS3.7 9.1.1.1)
        self.completed = 0
        self.warnings = 0
        self.failed: list[str] = []
        self._accepted: tuple[int, dict[tuple[str, str], int]] | None = None
        self._channel: BulkChannel | None = None

    def placeholder(self, item: RetrieveItem) -> Dataset:
        """What the handler yields to pynetdicom for ``item``; :meth:`send` turns it back into the file."""
        ds = Dataset()
        ds.SOPClassUID = item.sop_class_uid
        ds.SOPInstanceUID = item.sop_instance_uid
        return ds

    def remaining_after(self, done: int) -> list[str]:
        return [item.sop_instance_uid for item in self.items[done:]]

    def contexts(self) -> list[PresentationContext]:
        """Presentation contexts for a sub-association (PS3.8 9.3.2.2): per SOP class, one context
        per stored transfer syntax, then Explicit and Implicit VR Little Endian for the classes with
        convertible data; one transfer syntax each, so the peer's choice is never ambiguous.
        Beyond 128, fallbacks are dropped first; instances left without a context fail."""
        exact = dict.fromkeys((i.sop_class_uid, i.transfer_syntax_uid) for i in self.items)
        fallback = dict.fromkeys(
            (i.sop_class_uid, str(ts))
            for i in self.items
            if UID(i.transfer_syntax_uid) in CONVERTIBLE
            for ts in FALLBACK
        )
        pairs = list(exact) + [p for p in fallback if p not in exact]
        return [build_context(sop_class, [syntax]) for sop_class, syntax in pairs[:MAX_CONTEXTS]]

    def send(self, plain: Callable[..., Dataset], assoc: Association, dataset: Dataset, **kwargs: Any) -> Dataset:
        """Send the file ``dataset`` stands for with ``plain`` (the association's own ``send_c_store``);
        raises (a failed sub-operation for pynetdicom) when the peer accepted no usable context."""
        item = self._by_uid[str(dataset.SOPInstanceUID)]
        if self.originator_aet is not None and "originator_aet" in kwargs:
            kwargs["originator_aet"] = self.originator_aet
        accepted = self._accepted_contexts(assoc)
        try:
            context_id = accepted.get((item.sop_class_uid, item.transfer_syntax_uid))
            if context_id is not None:
                result = self._bulk(assoc).send_c_store(
                    item.path, item.sop_class_uid, item.sop_instance_uid, context_id, **kwargs
                )
            elif UID(item.transfer_syntax_uid) in CONVERTIBLE and any(
                (item.sop_class_uid, str(ts)) in accepted for ts in FALLBACK
            ):
                result = self._bulk(assoc).send_dataset(plain, pydicom.dcmread(item.path), **kwargs)
            else:
                raise ValueError(
                    f"no accepted presentation context for {UID(item.sop_class_uid).name} in "
                    f"{UID(item.transfer_syntax_uid).name} (not transcoded)"
                )
        except Exception:
            self.failed.append(item.sop_instance_uid)
            raise
        code = result.get("Status") if isinstance(result, Dataset) else None
        if code == 0x0000:
            self.completed += 1
        elif code in STORE_WARNINGS:
            self.warnings += 1
        else:
            self.failed.append(item.sop_instance_uid)
        return result

    def _accepted_contexts(self, assoc: Association) -> dict[tuple[str, str], int]:
        """(SOP class, transfer syntax) -> id of an accepted context on which this side may send a C-STORE."""
        if self._accepted is None or self._accepted[0] != id(assoc):
            pairs = {
                (str(cx.abstract_syntax), str(cx.transfer_syntax[0])): int(cx.context_id)
                for cx in reversed(assoc.accepted_contexts)
                if cx.as_scu
            }
            self._accepted = (id(assoc), pairs)
        return self._accepted[1]

    def _bulk(self, assoc: Association) -> BulkChannel:
        if self._channel is None or self._channel.assoc is not assoc:
            self.close()
            self._channel = BulkChannel(assoc)
        return self._channel

    @property
    def broken(self) -> bool:
        """A sub-operation got no response: the association is of no further use."""
        return self._channel is not None and self._channel.broken

    def close(self) -> None:
        """Take the bulk channel off the association (once the sub-operations are over)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def summary(self) -> str:
        return f"{self.completed} completed, {self.warnings} warning, {len(self.failed)} failed of {len(self.items)}"
