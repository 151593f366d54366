"""MLLP framing (HL7 v2.5.1 Appendix C.4.3 "Minimal Lower Layer Protocol"; IHE ITI TF-2x C.2.1).

A block is ``<SB=0x0B> message <EB=0x1C><CR=0x0D>``. The decoder is lenient about what real senders
do (mapping-reference §4 items 1-2): blocks split over reads, several blocks in one read, a missing CR
after EB, stray bytes between blocks (discarded and counted). It knows nothing about HL7 content.
"""

from __future__ import annotations

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"
LF = b"\x0a"

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MllpError(Exception):
    """The byte stream cannot be framed (message too large, or too much junk outside any block)."""


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP block: SB + message + EB + CR (Appendix C.4.3)."""
    return SB + bytes(message) + EB + CR


def normalise_segments(msg: bytes) -> bytes:
    """Make CR the only segment terminator (HL7 v2.5.1 §2.5.1) when the sender used newlines instead.

    - no CR at all: every CRLF/LF is a segment end -> CR;
    - every CR is part of a CRLF: CRLF -> CR (a bare LF, e.g. inside OBX-5 text, is kept);
    - otherwise the message already uses CR, and LF inside segments is data: returned unchanged.
    """
    cr_count = msg.count(CR)
    if cr_count == 0:
        return msg.replace(LF, CR)
    if msg.count(CR + LF) == cr_count:
        return msg.replace(CR + LF, CR)
    return msg


class MllpDecoder:
    """Incremental MLLP de-framer: ``feed(bytes)`` returns the complete messages found so far, in order.

    Bytes outside a block are discarded and counted in ``discarded``. An SB inside an open block means the
    sender restarted: the unfinished block is discarded. ``MllpError`` is raised when a block grows beyond
    ``max_message_bytes`` or when more than ``max_message_bytes`` junk bytes arrive with no block; the
    decoder must not be used after that.
    """

    frame = staticmethod(frame)

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self.discarded = 0  # total bytes thrown away (outside blocks, unfinished blocks)
        self._junk_run = 0  # junk bytes since the last complete block
        self._buf = bytearray()
        self._in_block = False
        self._after_eb = False  # the CR that should follow EB may still arrive in the next read
        self._scanned = 0  # bytes of _buf (inside a block) already searched for SB/EB

    @property
    def in_block(self) -> bool:
        """True while a block has started and its EB has not arrived yet."""
        return self._in_block

    @property
    def pending(self) -> int:
        """Bytes of an unfinished block held in the buffer."""
        return len(self._buf) if self._in_block else 0

    def _discard(self, n: int) -> None:
        self.discarded += n
        self._junk_run += n
        if self._junk_run > self.max_message_bytes:
            raise MllpError(f"{self._junk_run} bytes received outside any MLLP block")

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages completed by them (without SB/EB/CR)."""
        out: list[bytes] = []
        buf = self._buf
        buf += data
        while buf:
            if not self._in_block:
                if self._after_eb and buf[:1] == CR:
                    del buf[:1]
                self._after_eb = False
                start = buf.find(SB)
                if start < 0:
                    n = len(buf)
                    buf.clear()
                    self._discard(n)
                    break
                if start:
                    self._discard(start)
                del buf[: start + 1]
                self._in_block = True
                self._scanned = 0
                continue
            end = buf.find(EB, self._scanned)
            restart = buf.find(SB, self._scanned, end if end >= 0 else len(buf))
            if restart >= 0:  # new SB before EB: the sender gave up on the previous block
                del buf[: restart + 1]
                self._discard(restart + 1)
                self._scanned = 0
                continue
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > self.max_message_bytes:
                    raise MllpError(f"MLLP block exceeds {self.max_message_bytes} bytes")
                break
            if end > self.max_message_bytes:
                raise MllpError(f"MLLP block exceeds {self.max_message_bytes} bytes")
            out.append(bytes(buf[:end]))
            del buf[: end + 1]
            self._in_block = False
            self._after_eb = True
            self._junk_run = 0
        return out
