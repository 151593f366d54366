"""A keep-alive HTTP/1.1 client for the HTTP benchmarks (stdlib only: nothing of a third-party client's
own cost in the timings)."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any


class Client:
    """One keep-alive HTTP/1.1 connection with optional Basic auth."""

    def __init__(self, port: int, auth: tuple[str, str] | None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers: dict[str, str] = {}
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        self.conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON request and its JSON answer; RuntimeError on a non-2xx status."""
        data = json.dumps(body).encode() if body is not None else None
        status, _, raw = self.raw(method, path, data, {"Content-Type": "application/json"})
        if status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {status} {raw[:200]!r}")
        return json.loads(raw)
