"""Authentication of every HTTP route: HTTP Basic (RFC 7617) and OAuth2 bearer JWT (RFC 6750).

Reads (GET/HEAD) need the ``user`` role, anything else the role a view declares with
:func:`requires` (``admin`` when it declares none). ``[http] open = true`` turns auth off.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TypeVar

from flask import Request, g

from hub.app import Hub
from hub.services.auth import Principal

F = TypeVar("F", bound=Callable[..., object])
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def requires(role: str) -> Callable[[F], F]:
    """Declare the role a write route needs (``uploader`` for uploads)."""

    def mark(fn: F) -> F:
        fn.required_role = role  # type: ignore[attr-defined]
        return fn

    return mark


def public_if(condition: Callable[[Hub], bool]) -> Callable[[F], F]:
    """Serve a route without authentication while ``condition(hub)`` holds: only discovery documents that a
    client must read before it can get a token (SMART App Launch's smart-configuration), only once configured."""

    def mark(fn: F) -> F:
        fn.public_if = condition  # type: ignore[attr-defined]
        return fn

    return mark


def is_public(hub: Hub, view: Callable[..., object] | None) -> bool:
    condition = getattr(view, "public_if", None)
    return bool(condition is not None and condition(hub))


def authenticate(hub: Hub, request: Request) -> Principal | None:
    if hub.settings.http.open:
        return Principal("anonymous", ("admin",), "open")
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        return hub.auth.check_basic(username, password)
    if scheme == "bearer" and value.strip():
        return hub.auth.check_bearer(value.strip())
    return None


def required_role(request: Request, view: Callable[..., object] | None) -> str:
    declared = getattr(view, "required_role", None)
    if request.method in READ_METHODS:
        return declared or "user"
    return declared or "admin"


def challenge(hub: Hub) -> str:
    parts = ['Basic realm="rishub"']
    if hub.auth.bearer_enabled:
        parts.append('Bearer realm="rishub"')
    return ", ".join(parts)


def current_principal() -> Principal:
    return g.principal
