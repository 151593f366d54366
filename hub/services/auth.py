"""Authentication: HTTP Basic users with scrypt password hashes, and OAuth2 JWT bearer tokens.

JWT validation (RFC 7519 / RFC 9068 access tokens) uses authlib: signature against the configured
JWKS, then ``iss``, ``aud``, ``exp``/``nbf``. Roles come from a configurable claim.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import authlib.deprecate  # noqa: F401 - installs authlib's own warning filter before we override it

with warnings.catch_warnings():  # authlib 1.x announces joserfc for 2.0; its jose API is what we pin
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken, KeySet
    from authlib.jose.errors import JoseError

from hub.settings import JwtSettings
from hub.store import UserRepository
from hub.store.users import UserRow

log = logging.getLogger(__name__)

ROLES = ("admin", "user", "uploader")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Principal:
    name: str
    roles: tuple[str, ...]
    via: str  # basic | bearer | open
    claims: dict[str, object] = field(default_factory=dict, compare=False)  # validated JWT claims (bearer only)

    def has(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


class AuthService:
    """Checks credentials; verified Basic credentials are cached briefly (scrypt is slow on purpose)."""

    CACHE_SECONDS = 300
    USER_SECONDS = 2.0  # a user row read is reused this long: a password or role change elsewhere shows after it

    def __init__(self, users: UserRepository, jwt: JwtSettings) -> None:
        self.users = users
        self.jwt_settings = jwt
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._users: dict[str, tuple[float, UserRow | None]] = {}
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._jwt = JsonWebToken(["RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "EdDSA"])
        if jwt.jwks_file or jwt.jwks_url:
            self._keys = self._load_jwks()

    @property
    def bearer_enabled(self) -> bool:
        return self._keys is not None

    # ------------------------------------------------------------------ basic
    def _user(self, username: str) -> UserRow | None:
        """The user's row, read at most every USER_SECONDS (a keep-alive client sends Basic on every request:
        one index round trip per request was a fifth of a small write's server time on PostgreSQL)."""
        now = time.monotonic()
        with self._lock:
            hit = self._users.get(username)
        if hit is not None and hit[0] > now:
            return hit[1]
        user = self.users.get(username)
        with self._lock:
            if len(self._users) > 1000:
                self._users.clear()
            self._users[username] = (now + self.USER_SECONDS, user)
        return user

    def check_basic(self, username: str, password: str) -> Principal | None:
        user = self._user(username)
        if user is None:
            hash_password(password)  # same cost whether or not the user exists
            return None
        key = hashlib.sha256(f"{username}\0{password}\0{user.password_hash}".encode()).digest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        if not verify_password(password, user.password_hash):
            return None
        principal = Principal(username, user.roles, "basic")
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[key] = (now + self.CACHE_SECONDS, principal)
        return principal

    def set_password(self, username: str, password: str, roles: tuple[str, ...]) -> bool:
        for role in roles:
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
        created = self.users.upsert(username, hash_password(password), roles)
        with self._lock:
            self._users.pop(username, None)
        return created

    def ensure_admin(self, password: str, data_dir: Path) -> str | None:
        """Apply ``admin_password``; with none and no admin yet, create one at random.

        Returns the generated password (to print once) or ``None``.
        """
        if password:
            user = self.users.get("admin")
            if user is None or not verify_password(password, user.password_hash):
                self.set_password("admin", password, ("admin",))
            return None
        if self.users.get("admin") is not None:
            return None
        generated = secrets.token_urlsafe(18)
        self.set_password("admin", generated, ("admin",))
        path = data_dir / "admin-password.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generated + "\n")
        os.chmod(path, 0o600)
        return generated

    # ------------------------------------------------------------------ bearer
    def _load_jwks(self) -> KeySet:
        s = self.jwt_settings
        if s.jwks_file:
            data = json.loads(Path(s.jwks_file).read_text())
        else:
            with urllib.request.urlopen(s.jwks_url, timeout=10) as resp:  # noqa: S310 - configured URL
                data = json.loads(resp.read())
        return JsonWebKey.import_key_set(data)

    def check_bearer(self, token: str) -> Principal | None:
        if self._keys is None:
            return None
        s = self.jwt_settings
        options = {"iss": {"essential": True, "value": s.issuer}, "exp": {"essential": True}}
        if s.audience:
            options["aud"] = {"essential": True, "value": s.audience}
        try:
            claims = self._jwt.decode(token, self._keys, claims_options=options)
            claims.validate(leeway=30)
        except (JoseError, ValueError) as exc:
            log.info("bearer token rejected: %s", type(exc).__name__)
            return None
        raw = claims.get(s.roles_claim)
        if isinstance(raw, str):
            roles = tuple(raw.replace(",", " ").split())
        elif isinstance(raw, list):
            roles = tuple(str(r) for r in raw)
        else:
            roles = (s.default_role,)
        roles = tuple(r for r in roles if r in ROLES) or (s.default_role,)
        return Principal(str(claims.get("sub", "bearer")), roles, "bearer", dict(claims))
