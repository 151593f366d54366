"""Blocking MLLP client for outbound HL7 (HL7 v2.5.1 Appendix C.4.3; IHE ITI TF-2x C.2.1, optional TLS).

One message at a time on one kept-open connection: send a block, wait for the reply block. A connection
the server dropped while idle is detected at the next ``send`` and reopened once.
"""

from __future__ import annotations

import socket
import ssl

from interfaces.hl7.mllp import DEFAULT_MAX_MESSAGE_BYTES, MllpDecoder, MllpError, frame

RECV_BYTES = 65536


class MllpClient:
    """``send(message)`` -> reply payload (the ACK, without framing)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        server_hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.server_hostname = server_hostname or host
        self.max_message_bytes = max_message_bytes
        self._sock: socket.socket | None = None
        self._decoder = MllpDecoder(max_message_bytes)
        self._replies: list[bytes] = []

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still have been dropped by the server)."""
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection now (``send`` does it on demand)."""
        if self._sock is not None:
            return
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._decoder = MllpDecoder(self.max_message_bytes)
        self._replies = []

    def close(self) -> None:
        """Close the connection (a later ``send`` reconnects)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: bytes) -> bytes:
        """Send one message, return the reply payload. Reconnects once if a reused connection was dropped;
        raises ``ConnectionError`` if the server closes without replying, ``TimeoutError`` on no reply."""
        reused = self._sock is not None
        try:
            return self._exchange(message)
        except (ConnectionError, ssl.SSLError) as exc:
            self.close()
            if not reused or isinstance(exc, ssl.SSLCertVerificationError):
                raise
        return self._exchange(message)  # the server had dropped the idle connection: one retry on a fresh one

    def _exchange(self, message: bytes) -> bytes:
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(frame(message))
            while not self._replies:
                data = self._sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionResetError("MLLP peer closed the connection without a reply")
                self._replies.extend(self._decoder.feed(data))
        except (TimeoutError, MllpError):
            self.close()  # the stream position is unknown now: never reuse this connection
            raise
        return self._replies.pop(0)
