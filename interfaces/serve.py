"""``rishub serve``: one process, every listener (DIMSE, HTTP; HL7 MLLP when configured) over one Hub."""

from __future__ import annotations

import logging
import signal
import threading

from waitress.server import create_server

from hub.app import Hub
from interfaces.dimse.server import DimseServer
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


class Listeners:
    """Starts and stops every listener of one hub (used by ``rishub serve`` and the tests)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.dimse = DimseServer(hub)
        self.http = HttpServer(hub)

    def start(self) -> None:
        self.dimse.start()
        self.http.start()

    def stop(self) -> None:
        self.http.stop()
        self.dimse.stop()


def serve(hub: Hub) -> None:
    listeners = Listeners(hub)
    listeners.start()
    s = hub.settings
    print(
        f"rishub {hub.version}: HTTP http://{s.bind}:{listeners.http.port}  "
        f"DICOM {s.ae_title}@{s.bind}:{listeners.dimse.port}  "
        f"index {'SQLite' if s.is_sqlite else 'PostgreSQL'}  data {s.data_path}",
        flush=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    listeners.stop()
    hub.close()
