"""The hub as a DICOM SCU over pynetdicom: implements :class:`hub.services.remote.DicomClient`.

C-ECHO (PS3.7 9.1.5, PS3.4 A.4), C-FIND (PS3.7 9.1.2, PS3.4 C.4.1), C-MOVE (PS3.7 9.1.4, PS3.4
C.4.2) and C-STORE (PS3.7 9.1.1, PS3.4 B.2; see :mod:`interfaces.dimse.scu_store`). Every call opens
one association from our AE title (``settings.ae_title``) with the timeouts of ``[dicom]``, and turns
association failures (PS3.8 7.1 A-ASSOCIATE-RJ, 7.3 A-ABORT, TCP errors, ARTIM/ACSE timeouts) into
one-line :class:`~hub.services.remote.RemoteError` messages.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from hub.app import Hub
from hub.errors import HubError
from hub.services.remote import (
    EchoResult,
    MoveResult,
    OutgoingFile,
    RemoteError,
    RemoteService,
    StoreReport,
)
from hub.settings import Modality, Settings
from interfaces.dimse import reactor

FIND_MODELS = {"patient": PatientRootQueryRetrieveInformationModelFind,
               "study": StudyRootQueryRetrieveInformationModelFind}
MOVE_MODELS = {"patient": PatientRootQueryRetrieveInformationModelMove,
               "study": StudyRootQueryRetrieveInformationModelMove}
UNCOMPRESSED_LE = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
PENDING = (0xFF00, 0xFF01)
CANCELLED = 0xFE00
_NUMERIC_VRS = {"US", "UL", "SS", "SL", "UV", "SV"}
_FLOAT_VRS = {"FL", "FD"}


def remote_service(hub: Hub) -> RemoteService:
    """The SCU service of a running hub (composition happens here, in the adapter layer)."""
    return RemoteService.build(hub.settings, PynetdicomClient(hub.settings), hub.db, hub.blobs)


class PynetdicomClient:
    """:class:`hub.services.remote.DicomClient` over pynetdicom (thread-safe: one AE per call)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        reactor.install()

    # ------------------------------------------------------------------ associations
    def _ae(self) -> AE:
        d = self.settings.dicom
        ae = AE(ae_title=self.settings.ae_title)
        ae.acse_timeout = d.acse_timeout
        ae.dimse_timeout = d.dimse_timeout
        ae.network_timeout = d.network_timeout
        ae.connection_timeout = d.acse_timeout
        return ae

    @contextmanager
    def associate(self, modality: Modality, contexts: Sequence[PresentationContext]) -> Iterator[Association]:
        """An established association to ``modality`` proposing ``contexts`` (at most 128, PS3.8
        9.3.2.2); released on exit, aborted if the body raised."""
        ae = self._ae()
        connected: list[bool] = []
        started = time.monotonic()
        try:
            assoc = ae.associate(
                modality.host, modality.port, contexts=list(contexts), ae_title=modality.aet,
                max_pdu=self.settings.dicom.max_pdu_size,
                evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))],
            )
            if not assoc.is_established:
                raise self._association_error(modality, assoc, bool(connected), time.monotonic() - started)
            _nodelay(assoc)
            keep_responses_for_caller(assoc)
            try:
                yield assoc
            except BaseException:
                if assoc.is_established:
                    assoc.abort()
                raise
            if assoc.is_established:
                assoc.release()
        finally:
            ae.shutdown()

    def _association_error(self, m: Modality, assoc: Association, connected: bool, elapsed: float) -> RemoteError:
        where = f"{m.name} ({m.aet}@{m.host}:{m.port})"
        if not connected:
            if elapsed >= self.settings.dicom.acse_timeout * 0.9:
                return RemoteError("timeout", f"{where}: no TCP connection within {elapsed:.0f} s")
            try:
                socket.getaddrinfo(m.host, m.port)
            except OSError:
                return RemoteError("unreachable", f"{where}: cannot resolve host {m.host!r}")
            return RemoteError("unreachable", f"{where}: connection refused")
        rsp = getattr(assoc.acceptor, "primitive", None)
        if assoc.is_rejected and rsp is not None:
            return RemoteError(
                "rejected",
                f"{where}: association rejected ({rsp.result_str}, {rsp.source_str}: {rsp.reason_str})",
            )
        if rsp is not None and getattr(rsp, "result", None) == 0x00:
            return RemoteError("no_context", f"{where}: none of the proposed presentation contexts was accepted")
        if rsp is None and elapsed >= self.settings.dicom.acse_timeout * 0.9:
            return RemoteError("timeout", f"{where}: no association response within {elapsed:.0f} s")
        return RemoteError("aborted", f"{where}: association aborted by the remote")

    @staticmethod
    def lost(m: Modality, what: str, assoc: Association) -> RemoteError:
        """A DIMSE request that got no response: PS3.7 timeout or the association went away."""
        if assoc.is_aborted or not assoc.is_established:
            return RemoteError("aborted", f"{m.name}: association lost during {what}")
        return RemoteError("timeout", f"{m.name}: no {what} response (timeout)")

    # ------------------------------------------------------------------ C-ECHO
    def echo(self, modality: Modality) -> EchoResult:
        started = time.monotonic()
        with self.associate(modality, [build_context(Verification, UNCOMPRESSED_LE)]) as assoc:
            status = assoc.send_c_echo()
            if "Status" not in status:
                raise self.lost(modality, "C-ECHO", assoc)
        return EchoResult(modality.name, int(status.Status), time.monotonic() - started)

    # ------------------------------------------------------------------ C-FIND
    def find(self, modality: Modality, level: str, keys: dict[str, str], root: str = "study") -> list[dict[str, str]]:
        model = FIND_MODELS[root]
        identifier = build_identifier(level, keys)
        answers: list[dict[str, str]] = []
        with self.associate(modality, [build_context(model, UNCOMPRESSED_LE)]) as assoc:
            for status, found in assoc.send_c_find(identifier, model):
                if "Status" not in status:
                    raise self.lost(modality, "C-FIND", assoc)
                code = int(status.Status)
                if code in PENDING:
                    if found is not None:
                        answers.append(identifier_to_dict(found))
                    continue
                if code in (0x0000, CANCELLED):
                    break
                raise RemoteError("failed", f"{modality.name}: C-FIND failed: {describe(status)}", status=code)
        return answers

    # ------------------------------------------------------------------ C-MOVE
    def move(
        self, modality: Modality, level: str, keys: dict[str, str], destination_aet: str, root: str = "study"
    ) -> MoveResult:
        model = MOVE_MODELS[root]
        identifier = build_identifier(level, keys)
        started = time.monotonic()
        final: Dataset | None = None
        failed_uids: tuple[str, ...] = ()
        with self.associate(modality, [build_context(model, UNCOMPRESSED_LE)]) as assoc:
            for status, found in assoc.send_c_move(identifier, destination_aet, model):
                if "Status" not in status:
                    raise self.lost(modality, "C-MOVE", assoc)
                final = status
                if found is not None and "FailedSOPInstanceUIDList" in found:
                    value = found.FailedSOPInstanceUIDList
                    failed_uids = tuple(value) if isinstance(value, MultiValue) else tuple(v for v in [value] if v)
                if int(status.Status) not in PENDING:
                    break
        if final is None:
            raise RemoteError("aborted", f"{modality.name}: no C-MOVE response")
        return MoveResult(
            status=int(final.Status),
            completed=int(final.get("NumberOfCompletedSuboperations", 0) or 0),
            failed=int(final.get("NumberOfFailedSuboperations", 0) or 0),
            warnings=int(final.get("NumberOfWarningSuboperations", 0) or 0),
            remaining=int(final.get("NumberOfRemainingSuboperations", 0) or 0),
            failed_sop_instance_uids=failed_uids,
            comment=str(final.get("ErrorComment", "") or ""),
            seconds=time.monotonic() - started,
        )

    # ------------------------------------------------------------------ C-STORE
    def store(self, modality: Modality, files: Sequence[OutgoingFile]) -> StoreReport:
        from interfaces.dimse.scu_store import send_files

        return send_files(self, modality, files)


# --------------------------------------------------------------------------- helpers


def _nodelay(assoc: Association) -> None:
    """TCP_NODELAY on the association's socket: without it each request waits on Nagle + delayed ACK."""
    try:
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
    except (AttributeError, OSError):
        pass


def keep_responses_for_caller(assoc: Association) -> None:
    """Work around a pynetdicom race that loses DIMSE responses (the call then waits ``dimse_timeout``).

    ``send_c_*()`` pauses the association's reactor and waits for ``_is_paused``; but right after the
    previous call resumed it, ``_is_paused`` is still True from the reactor's last pause, so the next
    request can go out before the reactor woke up, and the reactor's ``get_msg()`` then takes the
    response off the queue. The reactor of a requestor association serves only requests *from* the
    peer (C-GET sub-operations, N-EVENT-REPORT), which none of our SCU operations receive; so here it
    gets no DIMSE messages at all, and every response stays for the ``send_c_*()`` waiting on it.
    """
    dimse = assoc.dimse
    get_msg = dimse.get_msg

    def guarded(block: bool = False) -> Any:  # noqa: ANN401 - pynetdicom's (context id, message) pair
        if threading.current_thread() is assoc:
            return None, None
        return get_msg(block)

    dimse.get_msg = guarded  # type: ignore[method-assign]


def build_identifier(level: str, keys: dict[str, str]) -> Dataset:
    """The C-FIND/C-MOVE Identifier (PS3.4 C.4.1.1.3): Query/Retrieve Level plus the keys; an empty
    value is a return key. Values not in ASCII go out as UTF-8 (ISO_IR 192, PS3.5 6.1.2.3)."""
    ds = Dataset()
    if any(not v.isascii() for v in keys.values()) and "SpecificCharacterSet" not in keys:
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        vr = dictionary_VR(keyword).split(" or ")[0]
        ds[tag] = DataElement(tag, vr, _value(vr, value))
    return ds


def _value(vr: str, value: str) -> Any:
    if vr == "SQ":
        return []
    if value == "":
        return None
    try:
        if vr in _NUMERIC_VRS:
            return [int(v) for v in value.split("\\")] if "\\" in value else int(value)
        if vr in _FLOAT_VRS:
            return [float(v) for v in value.split("\\")] if "\\" in value else float(value)
    except ValueError:
        raise HubError("invalid_query_value", f"not a number: {value!r} ({vr})") from None
    return value


def identifier_to_dict(ds: Dataset) -> dict[str, str]:
    """``{keyword: value}``, multiple values joined by ``\\``; sequences and binary values left out."""
    out: dict[str, str] = {}
    for elem in ds:
        if elem.VR == "SQ" or elem.tag.group == 0x0002:
            continue
        value = elem.value
        if isinstance(value, (bytes, bytearray)):
            continue
        if isinstance(value, MultiValue | list | tuple):
            text = "\\".join("" if v is None else str(v) for v in value)
        else:
            text = "" if value is None else str(value)
        out[elem.keyword or f"{elem.tag.group:04X}{elem.tag.element:04X}"] = text
    return out


def describe(status: Dataset) -> str:
    code = int(status.Status)
    comment = str(status.get("ErrorComment", "") or "").strip()
    return f"status 0x{code:04X}" + (f" ({comment})" if comment else "")
