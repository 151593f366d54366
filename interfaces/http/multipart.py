"""``multipart/related`` bodies (RFC 2387 over RFC 2046 5.1), read and written as streams.

:func:`read_parts` cuts a request body into parts without holding it in memory: each part's body is
written to a file as it arrives and handed over with its headers. :func:`write_parts` produces a
response body part by part (DICOMweb WADO-RS, PS3.18 8.7.3.3).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub.errors import HubError

CHUNK = 1 << 20
MAX_HEADER = 16 << 10


@dataclass
class Part:
    headers: dict[str, str]  # lower-case names
    path: Path
    size: int

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype; a=b; c="d"`` -> (``type/subtype`` lower-case, {a: b, c: d})."""
    main, *rest = split_unquoted(value, ";")
    params: dict[str, str] = {}
    for item in rest:
        name, sep, val = item.partition("=")
        if sep:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            params[name.strip().lower()] = val
    return main.strip().lower(), params


def split_unquoted(value: str, sep: str) -> list[str]:
    """``value`` cut at each ``sep`` outside double quotes (header parameter and list syntax, RFC 9110 5.6)."""
    out, cur, quoted = [], [], False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def read_parts(stream: BinaryIO, boundary: str, tmp_dir: Path) -> Iterator[Part]:
    """Yield the parts of a multipart body read from ``stream``; each part's body is in a temporary
    file in ``tmp_dir`` that the caller owns (and removes) once yielded. Malformed framing raises
    ``HubError('bad_request')``; parts already yielded stay valid."""
    if not boundary or len(boundary) > 200:
        raise HubError("bad_request", "multipart body without a usable boundary")
    delim = b"--" + boundary.encode("latin-1")
    buf = bytearray()
    eof = False

    def fill() -> bool:
        nonlocal eof
        if eof:
            return False
        chunk = stream.read(CHUNK)
        if not chunk:
            eof = True
            return False
        buf.extend(chunk)
        return True

    # preamble up to the first delimiter
    while True:
        idx = buf.find(delim)
        if idx >= 0 and (idx == 0 or buf[idx - 2 : idx] == b"\r\n"):
            del buf[: idx + len(delim)]
            break
        if not fill():
            raise HubError("bad_request", "multipart body has no part (boundary not found)")
    while True:
        while len(buf) < 2 and fill():
            pass
        if not buf and eof:
            return  # body ends right after a delimiter: take it as closed
        if buf[:2] == b"--":
            return  # close delimiter
        if buf[:2] != b"\r\n":
            raise HubError("bad_request", "malformed multipart delimiter line")
        del buf[:2]
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEADER or not fill():
                raise HubError("bad_request", "malformed multipart part headers")
        headers = _headers(bytes(buf[:end]))
        del buf[: end + 4]
        yield _body(buf, fill, b"\r\n" + delim, headers, tmp_dir)


def _headers(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HubError("bad_request", "malformed multipart part header line")
        out[name.strip().lower()] = value.strip()
    return out


def _body(buf: bytearray, fill: object, delim: bytes, headers: dict[str, str], tmp_dir: Path) -> Part:
    fd, name = tempfile.mkstemp(prefix="part-", dir=tmp_dir)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                idx = buf.find(delim)
                if idx >= 0:
                    out.write(buf[:idx])
                    size += idx
                    del buf[: idx + len(delim)]
                    break
                keep = len(delim) - 1
                if len(buf) > keep:
                    out.write(buf[: len(buf) - keep])
                    size += len(buf) - keep
                    del buf[: len(buf) - keep]
                if not fill():  # type: ignore[operator]
                    raise HubError("bad_request", "multipart body ends inside a part")
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Part(headers, Path(name), size)


def new_boundary() -> str:
    return uuid.uuid4().hex


def write_parts(parts: Iterable[tuple[dict[str, str], Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """The body of a multipart response: each part's headers, then its chunks, then the close delimiter."""
    delim = f"--{boundary}".encode()
    for headers, chunks in parts:
        head = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items())
        yield delim + b"\r\n" + head + b"\r\n"
        yield from chunks
        yield b"\r\n"
    yield delim + b"--\r\n"


def file_chunks(path: Path, start: int = 0, length: int | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
    """Stream ``length`` bytes of ``path`` from ``start`` (to the end when ``length`` is None)."""
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            data = f.read(chunk if left is None else min(chunk, left))
            if not data:
                break
            if left is not None:
                left -= len(data)
            yield data
