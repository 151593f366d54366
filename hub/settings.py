"""Typed settings: built-in defaults < TOML config file < ``RISHUB_*`` environment variables.

Every key of every section can be overridden from the environment: top-level keys as
``RISHUB_<KEY>`` (``RISHUB_DATA_DIR``), section keys as ``RISHUB_<SECTION>_<KEY>``
(``RISHUB_HTTP_PORT``). Remote DICOM nodes are ``[modalities.NAME]`` tables in the file, or
``RISHUB_MODALITIES`` holding the same tables as JSON. A wrong value raises
:class:`SettingsError` whose message is one line naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "RISHUB_"
_AET_RE = re.compile(r"^[\x20-\x7e]{1,16}$")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class HttpSettings:
    port: int = 8042
    threads: int = 16
    open: bool = False  # true: no authentication at all (only for closed networks)
    public_base_url: str = ""  # e.g. https://pacs.example/archive: absolute URLs in DICOMweb answers
    trusted_proxy: str = ""  # address of a reverse proxy whose X-Forwarded-* headers are believed ("*": any)
    cors_origins: str = ""  # comma-separated origins allowed by CORS (e.g. a web viewer's), "*" for any
    max_upload_mb: int = 16384  # largest request body (STOW, ZIP uploads); bigger ones get 413


@dataclass(frozen=True)
class DicomSettings:
    port: int = 4242
    check_called_aet: bool = True
    check_calling: bool = False  # true: only [modalities] AE titles from their hosts may associate
    case_insensitive_names: bool = True  # PN matching in C-FIND/QIDO (PS3.4 C.2.2.2.1 leaves it open)
    max_associations: int = 32
    max_pdu_size: int = 0  # 0 = unlimited (PS3.8 D.1 Maximum Length)
    network_timeout: int = 60
    acse_timeout: int = 30
    dimse_timeout: int = 60


@dataclass(frozen=True)
class RisSettings:
    """The RIS that receives order status messages (IHE RAD-3/RAD-13 style ORM^O01 SC or OMG^O19)."""

    host: str = ""  # empty: no status messages are sent (they still queue in the outbox)
    port: int = 0
    message_type: str = "ORM^O01"  # ORM^O01 (v2.3.1, ORC-1=SC) or OMG^O19 (v2.5.1)
    receiving_application: str = "RIS"
    receiving_facility: str = "RADIOLOGY"
    tls: bool = False
    tls_ca: str = ""  # CA bundle to verify the RIS; empty: the system's
    timeout: int = 30  # seconds to wait for the ACK
    retry_initial: float = 2.0  # first back-off in seconds, doubled per attempt
    retry_max: float = 300.0  # back-off ceiling


@dataclass(frozen=True)
class Hl7Settings:
    port: int = 2575
    enabled: bool = True
    tls_cert: str = ""  # PEM certificate chain: MLLP over TLS when set
    tls_key: str = ""
    tls_client_ca: str = ""  # require client certificates signed by this CA
    max_connections: int = 64
    sending_application: str = "RISHUB"  # MSH-3/MSH-4 of ACKs and status messages
    sending_facility: str = "PACS"
    default_charset: str = "8859/1"  # MSH-18 value assumed when a message leaves MSH-18 empty
    sender_charsets: str = ""  # per sender (MSH-3) defaults, e.g. "RIS_B=UNICODE UTF-8, LAB=8859/1"
    primary_issuer: str = ""  # PID-3 repetition whose CX-4 namespace is this is the Patient ID; empty: the first
    study_uid_policy: str = "derive"  # no Study UID sent: derive (from RP ID/accession) | generate | reject
    station_by_modality: str = ""  # station AE when IPC-9/ORC-18 are empty, e.g. "CT=CT_ROOM1, MR=MR_ROOM2"
    modality_map: str = ""  # OBR-24/IPC-5 code -> DICOM Modality additions, e.g. "RX=CR, NMS=NM"
    overflow: str = "reject"  # a value longer than its DICOM VR allows: reject (AE 102) | truncate (and log)
    worklist_statuses: str = "SCHEDULED"  # SPS statuses MWL C-FIND shows when the query leaves it empty
    ris: RisSettings = field(default_factory=RisSettings)


@dataclass(frozen=True)
class StorageSettings:
    duplicate_policy: str = "keep"  # keep | overwrite | reject
    fsync: bool = True
    import_workers: int = 0  # 0 = 2 x CPU count
    parse_workers: int = -1  # processes parsing headers of bulk uploads (STOW-RS); -1: one per CPU when >1; 0: none
    stable_age: int = 60  # seconds without a new instance before a resource is stable (Orthanc StableAge)
    archive_deflate: bool = False  # ZIP archives: store files (fast) or deflate them (zlib level 1)


@dataclass(frozen=True)
class RenderSettings:
    backend: str = "auto"  # auto (OpenGL where a context can be made, else CPU) | cpu | gl
    cache_mb: int = 2048  # volumes kept in memory (LRU by bytes)
    max_size: int = 2048  # largest output side in pixels
    wait_seconds: float = 30.0  # how long a request waits for the slices it needs while a volume loads


@dataclass(frozen=True)
class JwtSettings:
    issuer: str = ""
    audience: str = ""
    jwks_file: str = ""
    jwks_url: str = ""
    roles_claim: str = "roles"
    default_role: str = "user"
    # SMART discovery (/fhir/.well-known/smart-configuration, SMART App Launch 2.x): the authorization
    # server's endpoints and the client capabilities it supports (comma-separated).
    token_endpoint: str = ""
    authorization_endpoint: str = ""
    smart_capabilities: str = "client-confidential-asymmetric"


@dataclass(frozen=True)
class AuthSettings:
    jwt: JwtSettings = field(default_factory=JwtSettings)


@dataclass(frozen=True)
class Modality:
    """A remote DICOM node (Orthanc's ``DicomModalities``)."""

    name: str
    aet: str
    host: str
    port: int = 104
    allow_echo: bool = True
    allow_find: bool = True
    allow_move: bool = True
    allow_get: bool = True
    allow_store: bool = True


@dataclass(frozen=True)
class Settings:
    data_dir: str = "./data"
    database_url: str = ""  # empty: SQLite file index.db under data_dir
    bind: str = "127.0.0.1"
    ae_title: str = "RISHUB"
    admin_password: str = ""
    log_level: str = "INFO"
    http: HttpSettings = field(default_factory=HttpSettings)
    dicom: DicomSettings = field(default_factory=DicomSettings)
    hl7: Hl7Settings = field(default_factory=Hl7Settings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    modalities: dict[str, Modality] = field(default_factory=dict)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'index.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


# --------------------------------------------------------------------------- loading


def load(config_file: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, then ``config_file`` (only the keys it changes), then env."""
    env = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    if config_file is None and env.get("RISHUB_CONFIG"):
        config_file = env["RISHUB_CONFIG"]
    if config_file is not None:
        path = Path(config_file)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"config file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: invalid TOML: {exc}") from None
    settings = _build(Settings, raw, "")
    settings = _apply_env(settings, env)
    _validate(settings)
    return settings


def _build(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise SettingsError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    kwargs: dict[str, Any] = {}
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise SettingsError(f"{dotted}: unknown setting")
        f = known[key]
        if key == "modalities":
            kwargs[key] = _build_modalities(value, dotted)
        elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            kwargs[key] = _build(f.default_factory, value, dotted + ".")
        else:
            kwargs[key] = _coerce(value, _field_type(cls, key), dotted)
    return cls(**kwargs)


def _build_modalities(raw: Any, dotted: str) -> dict[str, Modality]:
    if not isinstance(raw, dict):
        raise SettingsError(f"{dotted}: expected tables [modalities.NAME]")
    out: dict[str, Modality] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{dotted}.{name}: expected a table with aet, host, port")
        for required in ("aet", "host"):
            if required not in table:
                raise SettingsError(f"{dotted}.{name}.{required}: missing")
        out[name] = _build(Modality, {"name": name, **table}, f"{dotted}.{name}.")
    return out


def _field_type(cls: type, key: str) -> type:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    t = hints[key]
    return {"int": int, "str": str, "bool": bool, "float": float}.get(t if isinstance(t, str) else t.__name__, str)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(value: Any, typ: type, dotted: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise SettingsError(f"{dotted}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise SettingsError(f"{dotted}: expected an integer, got {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise SettingsError(f"{dotted}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise SettingsError(f"{dotted}: expected a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise SettingsError(f"{dotted}: expected a number, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise SettingsError(f"{dotted}: expected a string, got {type(value).__name__}")
        return str(value)
    return value


def pairs(text: str) -> dict[str, str]:
    """A table-valued setting, ``"CT=CT_ROOM1, MR=MR_ROOM2"`` -> ``{"CT": "CT_ROOM1", "MR": "MR_ROOM2"}``."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def env_name(dotted: str) -> str:
    """``http.port`` -> ``RISHUB_HTTP_PORT``."""
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def _apply_env(settings: Any, env: dict[str, str], prefix: str = "") -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        dotted = f"{prefix}{f.name}"
        value = getattr(settings, f.name)
        if f.name == "modalities":
            name = env_name(dotted)
            if name in env and env[name].strip():
                try:
                    parsed = json.loads(env[name])
                except json.JSONDecodeError as exc:
                    raise SettingsError(f"{name}: invalid JSON: {exc.msg}") from None
                changes[f.name] = _build_modalities(parsed, name)
        elif dataclasses.is_dataclass(value):
            changes[f.name] = _apply_env(value, env, dotted + ".")
        else:
            name = env_name(dotted)
            if name in env:
                changes[f.name] = _coerce(env[name], _field_type(type(settings), f.name), name)
    return dataclasses.replace(settings, **changes)


def _check_port(value: int, key: str) -> None:
    if not 0 <= value <= 65535:
        raise SettingsError(f"{key}: port must be 0-65535, got {value}")


def _validate(s: Settings) -> None:
    for key, port in (("http.port", s.http.port), ("dicom.port", s.dicom.port), ("hl7.port", s.hl7.port)):
        _check_port(port, f"{key} ({env_name(key)})")
    if not _AET_RE.match(s.ae_title) or s.ae_title.strip() != s.ae_title or "\\" in s.ae_title:
        raise SettingsError(f"ae_title (RISHUB_AE_TITLE): 1-16 printable characters, no backslash, got {s.ae_title!r}")
    if s.hl7.study_uid_policy not in ("derive", "generate", "reject"):
        raise SettingsError(f"hl7.study_uid_policy: derive, generate or reject, got {s.hl7.study_uid_policy!r}")
    if s.hl7.overflow not in ("truncate", "reject"):
        raise SettingsError(f"hl7.overflow: expected truncate or reject, got {s.hl7.overflow!r}")
    if s.hl7.ris.message_type not in ("ORM^O01", "OMG^O19"):
        raise SettingsError(f"hl7.ris.message_type: expected ORM^O01 or OMG^O19, got {s.hl7.ris.message_type!r}")
    _check_port(s.hl7.ris.port, "hl7.ris.port")
    if s.storage.duplicate_policy not in ("keep", "overwrite", "reject"):
        raise SettingsError(
            f"storage.duplicate_policy: expected keep, overwrite or reject, got {s.storage.duplicate_policy!r}"
        )
    url = s.effective_database_url
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        scheme = url.split(":")[0]
        raise SettingsError(
            f"database_url (RISHUB_DATABASE_URL): only sqlite:/// and postgresql+psycopg:// URLs, got {scheme!r}"
        )
    if s.render.backend not in ("auto", "cpu", "gl"):
        raise SettingsError(f"render.backend: expected auto, cpu or gl, got {s.render.backend!r}")
    if s.render.cache_mb < 0 or s.render.max_size < 16 or s.render.wait_seconds <= 0:
        raise SettingsError("render: cache_mb >= 0, max_size >= 16 and wait_seconds > 0")
    if s.http.threads < 1:
        raise SettingsError(f"http.threads: must be at least 1, got {s.http.threads}")
    if s.dicom.max_associations < 1:
        raise SettingsError(f"dicom.max_associations: must be at least 1, got {s.dicom.max_associations}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"log_level: expected DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}")
    jwt = s.auth.jwt
    if (jwt.jwks_file or jwt.jwks_url) and not jwt.issuer:
        raise SettingsError("auth.jwt.issuer: required when a JWKS is configured")
    if jwt.jwks_file and not Path(jwt.jwks_file).is_file():
        raise SettingsError(f"auth.jwt.jwks_file: file not found: {jwt.jwks_file}")
    for key in ("token_endpoint", "authorization_endpoint"):
        url = getattr(jwt, key)
        if url and not (jwt.jwks_file or jwt.jwks_url):
            raise SettingsError(f"auth.jwt.{key}: needs bearer tokens (auth.jwt.jwks_file or jwks_url)")
        if url and not url.startswith(("https://", "http://")):
            raise SettingsError(f"auth.jwt.{key}: expected an http(s) URL, got {url!r}")
    if jwt.authorization_endpoint and not jwt.token_endpoint:
        raise SettingsError("auth.jwt.authorization_endpoint: needs auth.jwt.token_endpoint too")
    for name, m in s.modalities.items():
        if not _AET_RE.match(m.aet):
            raise SettingsError(f"modalities.{name}.aet: 1-16 printable characters, got {m.aet!r}")
        _check_port(m.port, f"modalities.{name}.port")
        if not m.host:
            raise SettingsError(f"modalities.{name}.host: must not be empty")
