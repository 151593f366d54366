"""Threaded MLLP listener (HL7 v2.5.1 Appendix C.4.3; IHE ITI TF-2x C.2.1, optional TLS per ITI-19 ATNA).

One thread per connection, at most ``max_connections`` at a time (further connections wait in the
listen backlog). Messages of one connection are handled strictly in order: each is handed to the
handler and its reply is sent before the next one is read (mapping-reference §4 item 2). Logs carry
peer addresses, sizes and error classes only, never message content.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from interfaces.hl7.mllp import DEFAULT_MAX_MESSAGE_BYTES, MllpDecoder, MllpError, frame

log = logging.getLogger(__name__)

RECV_BYTES = 65536
HANDSHAKE_SECONDS = 30.0


@dataclass(frozen=True)
class Peer:
    """The remote end of one MLLP connection."""

    host: str
    port: int
    tls: bool = False
    cert_subject: str | None = None  # "CN=...,O=..." of the verified client certificate (mutual TLS)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}{' (tls)' if self.tls else ''}"


Handler = Callable[[bytes, Peer], "bytes | None"]


_SHORT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
                "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC"}


def _subject_of(cert: dict | None) -> str | None:
    if not cert or "subject" not in cert:
        return None
    parts = [f"{_SHORT_NAMES.get(key, key)}={value}" for rdn in cert["subject"] for key, value in rdn]
    return ",".join(parts) or None


class MllpServer:
    """MLLP server: ``handler(message, peer)`` returns the reply payload (framed and sent) or None."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 2575,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        idle_timeout: float = 300,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> int:
        """Bind and listen (port 0 = ephemeral), start accepting; return the bound port."""
        if self._listener is not None:
            raise RuntimeError("MLLP server already started")
        self._stopping.clear()
        listener = socket.create_server((self.host, self.port), backlog=max(16, self.max_connections))
        listener.settimeout(0.5)  # lets the accept loop notice stop()
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(target=self._accept_loop, name=f"mllp-accept-{self.port}", daemon=True)
        self._accept_thread.start()
        log.info("MLLP listening on %s:%d%s", self.host, self.port, " (tls)" if self.ssl_context else "")
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections and wait for their threads."""
        self._stopping.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() at once on Linux
            except OSError:
                pass
            self._listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        with self._lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread, _ in conns:
            thread.join(timeout)
        self._listener = None
        self._accept_thread = None
        log.info("MLLP listener on port %d stopped", self.port)

    def __enter__(self) -> MllpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def active_connections(self) -> int:
        """Connections being served right now."""
        with self._lock:
            return len(self._conns)

    # -- accept ----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue  # all connection slots busy: new clients wait in the backlog
            try:
                sock, addr = listener.accept()
            except TimeoutError:
                self._slots.release()
                continue
            except OSError:
                self._slots.release()
                if self._stopping.is_set():
                    return
                log.exception("MLLP accept failed on port %d", self.port)
                continue
            thread = threading.Thread(
                target=self._serve_connection, args=(sock, addr), name=f"mllp-{addr[0]}:{addr[1]}", daemon=True
            )
            with self._lock:
                self._conns[thread] = sock
            try:
                thread.start()
            except RuntimeError:  # out of threads: refuse this connection, keep listening
                log.error("MLLP cannot start a thread for %s:%d: closing", addr[0], addr[1])
                with self._lock:
                    self._conns.pop(thread, None)
                sock.close()
                self._slots.release()

    # -- one connection --------------------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket, addr: tuple) -> None:
        peer = Peer(host=addr[0], port=addr[1], tls=self.ssl_context is not None)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock.settimeout(min(self.idle_timeout, HANDSHAKE_SECONDS))
                tls_sock = self._handshake(sock, peer)
                if tls_sock is None:
                    return
                sock = tls_sock
                with self._lock:
                    self._conns[threading.current_thread()] = sock
                peer = Peer(peer.host, peer.port, True, _subject_of(sock.getpeercert()))
            sock.settimeout(self.idle_timeout)
            log.info("MLLP connection from %s", peer)
            self._converse(sock, peer)
        except Exception:  # last line of defence: one connection never takes the listener down
            log.exception("MLLP connection from %s failed", peer)
        finally:
            try:
                sock.close()
            finally:
                with self._lock:
                    self._conns.pop(threading.current_thread(), None)
                self._slots.release()

    def _handshake(self, sock: socket.socket, peer: Peer) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        try:
            tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            tls.do_handshake()
            return tls
        except (ssl.SSLError, OSError) as exc:
            log.warning("MLLP TLS handshake with %s failed: %s", peer, type(exc).__name__)
            sock.close()
            return None

    def _converse(self, sock: socket.socket, peer: Peer) -> None:
        decoder = MllpDecoder(self.max_message_bytes)
        handled = 0
        while not self._stopping.is_set():
            try:
                data = sock.recv(RECV_BYTES)
            except TimeoutError:
                log.info("MLLP connection from %s idle for %ss: closing", peer, self.idle_timeout)
                return
            except (ConnectionError, ssl.SSLError, OSError) as exc:
                log.info("MLLP connection from %s dropped (%s)", peer, type(exc).__name__)
                return
            if not data:
                break
            try:
                messages = decoder.feed(data)
            except MllpError:
                log.warning(
                    "MLLP framing error from %s (message limit %d bytes, %d stray bytes): closing",
                    peer, self.max_message_bytes, decoder.discarded,
                )
                self._close_gracefully(sock)
                return
            for message in messages:  # in arrival order; each answered before the next is read
                try:
                    reply = self.handler(message, peer)
                except Exception as exc:
                    log.error("MLLP handler failed on a %d-byte message from %s (%s): closing connection",
                              len(message), peer, type(exc).__name__)
                    log.debug("handler traceback (exception text omitted):\n%s",
                              "".join(traceback.format_tb(exc.__traceback__)))
                    self._close_gracefully(sock)
                    return
                handled += 1
                if reply is not None:
                    try:
                        sock.sendall(frame(reply))
                    except (OSError, ssl.SSLError) as exc:
                        log.info("MLLP reply to %s not sent (%s)", peer, type(exc).__name__)
                        return
        if decoder.pending:
            log.warning("MLLP connection from %s closed inside a block (%d bytes lost)", peer, decoder.pending)
        if decoder.discarded:
            log.warning("MLLP connection from %s: %d stray bytes discarded", peer, decoder.discarded)
        log.info("MLLP connection from %s closed after %d message(s)", peer, handled)

    @staticmethod
    def _close_gracefully(sock: socket.socket, drain_seconds: float = 2.0) -> None:
        """Send FIN, then read and drop what the peer is still sending for a moment, so that closing does
        not turn into a TCP reset (unread input at close() makes the kernel send RST)."""
        try:
            sock.shutdown(socket.SHUT_WR)  # on an SSLSocket this also detaches TLS: the rest is raw bytes
            deadline = time.monotonic() + drain_seconds
            sock.settimeout(0.2)
            while time.monotonic() < deadline and sock.recv(RECV_BYTES):
                pass
        except (OSError, ssl.SSLError, ValueError):
            pass
