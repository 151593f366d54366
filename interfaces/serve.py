"""``rishub serve``: one process, every listener (DIMSE, HTTP; HL7 MLLP when configured) over one Hub."""

from __future__ import annotations

import logging
import signal
import ssl
import threading

from waitress.server import create_server

from hub.app import Hub
from hub.settings import Hl7Settings
from interfaces.dimse.server import DimseServer
from interfaces.hl7.mllp import normalise_segments
from interfaces.hl7.outbound import OutboxSender
from interfaces.hl7.server import MllpServer, Peer
from interfaces.http.app import create_app

log = logging.getLogger(__name__)


class HttpServer:
    def __init__(self, hub: Hub, host: str | None = None, port: int | None = None) -> None:
        s = hub.settings
        self.app = create_app(hub)
        self.server = create_server(
            self.app,
            host=host if host is not None else s.bind,
            port=port if port is not None else s.http.port,
            threads=s.http.threads,
            ident="rishub",
            clear_untrusted_proxy_headers=True,
            channel_timeout=300,
            max_request_body_size=s.http.max_upload_mb * 1024 * 1024,
            outbuf_overflow=16 * 1024 * 1024,  # keep streamed answers in memory for a slow reader, not a temp file
            **_proxy_options(s.http.trusted_proxy),
        )
        self.port = int(self.server.effective_port)  # type: ignore[union-attr]
        self._thread: threading.Thread | None = None
        self._stopping = False

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self._stopping:  # closing the sockets under the loop is how waitress stops
                raise

    def start(self) -> int:
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        log.info("HTTP listening on %s:%d", self.server.effective_host, self.port)  # type: ignore[union-attr]
        return self.port

    def stop(self) -> None:
        self._stopping = True
        self.server.close()


def _proxy_options(trusted: str) -> dict[str, object]:
    """waitress options that believe X-Forwarded-Proto/-Host/-Port/-For (and our X-Forwarded-Prefix)
    from ``trusted`` only; every other client's are removed before the app sees them."""
    if not trusted:
        return {}
    return {"trusted_proxy": trusted, "trusted_proxy_count": 1,
            "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-forwarded-for"}}


def _mllp_tls(s: Hl7Settings) -> ssl.SSLContext | None:
    """MLLP over TLS when a certificate is configured (IHE ITI TF-2 3.19.6.1 ATNA secure node)."""
    if not s.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(s.tls_cert, s.tls_key or None)
    if s.tls_client_ca:
        ctx.load_verify_locations(s.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class Hl7Listener:
    """The MLLP listener: each message goes to the inbound HL7 service, its ACK goes back."""

    def __init__(self, hub: Hub) -> None:
        s = hub.settings
        self.hub = hub
        self.server = MllpServer(self._handle, s.bind, s.hl7.port, ssl_context=_mllp_tls(s.hl7),
                                 max_connections=s.hl7.max_connections)

    def _handle(self, raw: bytes, peer: Peer) -> bytes:
        return self.hub.hl7.handle(normalise_segments(raw), f"{peer.host}:{peer.port}")

    @property
    def port(self) -> int:
        return self.server.port


class Listeners:
    """Starts and stops every listener of one hub (used by ``rishub serve`` and the tests)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.dimse = DimseServer(hub)
        self.http = HttpServer(hub)
        self.hl7 = Hl7Listener(hub) if hub.settings.hl7.enabled else None
        self.outbox = OutboxSender(hub)

    def start(self) -> None:
        self.dimse.start()
        self.http.start()
        if self.hl7 is not None:
            self.hl7.server.start()
            log.info("HL7 MLLP listening on %s:%d", self.hub.settings.bind, self.hl7.port)
        self.outbox.start()

    def stop(self) -> None:
        self.outbox.stop()
        if self.hl7 is not None:
            self.hl7.server.stop()
        self.http.stop()
        self.dimse.stop()


def serve(hub: Hub) -> None:
    listeners = Listeners(hub)
    listeners.start()
    threading.Thread(target=hub.render.warm_up, name="render-warm-up", daemon=True).start()
    s = hub.settings
    print(
        f"rishub {hub.version}: HTTP http://{s.bind}:{listeners.http.port}  "
        f"DICOM {s.ae_title}@{s.bind}:{listeners.dimse.port}  "
        + (f"HL7 MLLP {s.bind}:{listeners.hl7.port}  " if listeners.hl7 is not None else "")
        + f"index {'SQLite' if s.is_sqlite else 'PostgreSQL'}  data {s.data_path}",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    listeners.stop()
    hub.close()
