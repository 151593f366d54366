"""The hub's DICOM Application Entity.

SCP for Verification, every Storage SOP class (PS3.4 Annex B; every transfer syntax pydicom knows,
stored as received), Query/Retrieve FIND/MOVE/GET in the Patient Root and Study Root models
(PS3.4 Annex C) and Storage Commitment Push Model (PS3.4 Annex J). Storage contexts accept the SCP
role too, so that C-GET can send its sub-operations back on the requester's association.
"""

from __future__ import annotations

import copy
import logging
import socket
import threading

from pydicom.uid import (
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from hub.app import Hub
from hub.services.modalities import ModalityDirectory
from interfaces.dimse import reactor
from interfaces.dimse.commit import make_commit_handler
from interfaces.dimse.echo import make_echo_handler
from interfaces.dimse.find import make_find_handler
from interfaces.dimse.get import make_get_handler
from interfaces.dimse.move import make_move_handler
from interfaces.dimse.mpps import make_mpps_handlers
from interfaces.dimse.mwl import MODALITY_WORKLIST_FIND, make_mwl_handler
from interfaces.dimse.store import make_store_handler

log = logging.getLogger(__name__)

QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")

# Stream C-STORE data sets to a file instead of decoding them in memory.
_config.STORE_RECV_CHUNKED_DATASET = True
_config.LOG_HANDLER_LEVEL = "none"
# pynetdicom would log C-FIND/C-MOVE identifiers (patient data) at DEBUG; never.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


def preferred_transfer_syntaxes() -> list[str]:
    """Acceptor order (pynetdicom accepts the first of ours that the requester proposed):
    lossless compressed (keep what the modality compressed), then Explicit VR LE, the other
    uncompressed ones with Implicit VR LE last, then lossy ones (only when nothing else is proposed,
    so we never ask a sender to compress lossily)."""
    lossless, lossy = [], []
    for ts in AllTransferSyntaxes:
        if not ts.is_compressed:
            continue
        (lossless if "Lossless" in ts.keyword and "NearLossless" not in ts.keyword else lossy).append(str(ts))
    uncompressed = [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian]
    return lossless + [str(ts) for ts in uncompressed] + lossy


class _Contexts(list):
    """The server's supported contexts. pynetdicom deep-copies them for every association, which
    for ~170 contexts costs ~30 ms per association; a context holds only UIDs and flags, so a
    shallow copy of each (with its own transfer syntax list) is an equally independent copy."""

    def __deepcopy__(self, memo: dict) -> list:
        out = []
        for cx in self:
            clone = copy.copy(cx)
            clone._transfer_syntax = list(cx._transfer_syntax)
            out.append(clone)
        return out


class HubAssociationServer(ThreadedAssociationServer):
    """Sets TCP_NODELAY on every accepted socket (else each DIMSE response waits ~40 ms on
    Nagle + delayed ACK) and drops connections from hosts outside the allow-list."""

    allowed_hosts: set[str] | None = None

    def get_request(self):  # noqa: ANN201
        sock, address = super().get_request()
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock, address

    def verify_request(self, request, client_address) -> bool:  # noqa: ANN001
        if self.allowed_hosts is None:
            return True
        ok = client_address[0] in self.allowed_hosts
        if not ok:
            log.warning("DICOM connection from %s refused: host not in [modalities]", client_address[0])
        return ok


def build_ae(hub: Hub, directory: ModalityDirectory) -> AE:
    s = hub.settings
    reactor.install()
    ae = AE(ae_title=s.ae_title)
    ae.maximum_pdu_size = s.dicom.max_pdu_size
    ae.maximum_associations = s.dicom.max_associations
    ae.network_timeout = s.dicom.network_timeout
    ae.acse_timeout = s.dicom.acse_timeout
    ae.dimse_timeout = s.dicom.dimse_timeout
    ae.require_called_aet = s.dicom.check_called_aet
    if directory.check_calling:
        ae._require_calling_aet = directory.calling_aets()  # type: ignore[assignment]  # live: REST changes count
    syntaxes = preferred_transfer_syntaxes()
    assert len(syntaxes) == len(AllTransferSyntaxes)
    ae.add_supported_context(Verification, syntaxes)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, syntaxes, scu_role=True, scp_role=True)
    for sop_class in QUERY_RETRIEVE:
        ae.add_supported_context(sop_class, list(UNCOMPRESSED))
    ae.add_supported_context(StorageCommitmentPushModel, list(UNCOMPRESSED))
    ae.add_supported_context(ModalityWorklistInformationFind, list(UNCOMPRESSED))
    ae.add_supported_context(ModalityPerformedProcedureStep, list(UNCOMPRESSED))
    return ae


def make_c_find_router(hub: Hub, directory: ModalityDirectory):  # noqa: ANN201
    """pynetdicom sends the C-FIND of every information model to one handler: Modality Worklist
    (PS3.4 K) goes to the MWL handler, Query/Retrieve (PS3.4 C) to the Q/R one."""
    qr = make_find_handler(hub, directory)
    mwl = make_mwl_handler(hub, directory)

    def handle_c_find(event: evt.Event):  # noqa: ANN202
        if str(event.request.AffectedSOPClassUID) == MODALITY_WORKLIST_FIND:
            yield from mwl(event)
        else:
            yield from qr(event)

    return handle_c_find


class DimseServer:
    """Runs the AE's acceptor in a background thread."""

    def __init__(self, hub: Hub, host: str | None = None, port: int | None = None) -> None:
        self.hub = hub
        self.directory = hub.modalities
        self.ae = build_ae(hub, self.directory)
        self.host = host if host is not None else hub.settings.bind
        self.port = port if port is not None else hub.settings.dicom.port
        self._server: HubAssociationServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        handlers = [
            (evt.EVT_C_ECHO, make_echo_handler(self.hub, self.directory)),
            (evt.EVT_C_STORE, make_store_handler(self.hub, self.directory)),
            (evt.EVT_C_FIND, make_c_find_router(self.hub, self.directory)),
            (evt.EVT_C_MOVE, make_move_handler(self.hub, self.directory, self.ae)),
            (evt.EVT_C_GET, make_get_handler(self.hub, self.directory)),
            (evt.EVT_N_ACTION, make_commit_handler(self.hub, self.directory, self.ae)),
        ]
        mpps_create, mpps_set = make_mpps_handlers(self.hub, self.directory)
        handlers += [(evt.EVT_N_CREATE, mpps_create), (evt.EVT_N_SET, mpps_set)]
        server = self.ae.make_server(
            (self.host, self.port), evt_handlers=handlers, server_class=HubAssociationServer
        )
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server.contexts = _Contexts(server.contexts)
        if self.directory.check_calling:
            server.allowed_hosts = self.directory.live_hosts()  # type: ignore[assignment]
        self.ae._servers.append(server)  # as AE.start_server does; shutdown() removes it
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="dimse-acceptor", daemon=True)
        self._thread.start()
        self.port = server.server_address[1]
        log.info("DICOM listening on %s:%d as %s", self.host, self.port, self.ae.ae_title)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # also closes the listening socket
            self._server = None
        self.ae.shutdown()
