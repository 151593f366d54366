"""Remote DICOM nodes: who may associate, what each may do, and where the SCU calls go.

The registry is the ``[modalities]`` of the settings plus the modalities declared at run time
(Orthanc ``PUT /modalities/{name}``), which are kept in the database and override a settings entry
of the same name; deleting a settings entry at run time leaves a tombstone row, so it stays deleted
after a restart until it is declared again. Every reader (the DIMSE permission checks and C-MOVE
destinations, the SCU calls) sees a change made through :meth:`ModalityDirectory.put` or
:meth:`ModalityDirectory.remove` at once; changes made by another process within ``refresh_seconds``.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from hub.errors import HubError
from hub.settings import Modality, Settings

log = logging.getLogger(__name__)

PERMISSIONS = ("echo", "find", "move", "get", "store")
# Orthanc 1.10 ModalityManufacturer, and the obsolete names it still reads (Enumerations.cpp).
MANUFACTURERS = ("Generic", "GenericNoWildcardInDates", "GenericNoUniversalWildcard", "Vitrea", "GE")
OBSOLETE_MANUFACTURERS = {"AgfaImpax": "GenericNoWildcardInDates", "SyngoVia": "GenericNoWildcardInDates",
                          "EFilm2": "Generic", "MedInria": "Generic", "ClearCanvas": "Generic",
                          "Dcm4Chee": "Generic"}
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2 AE: 16 characters, no backslash


@lru_cache(maxsize=256)
def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset({host})


@dataclass(frozen=True)
class RemoteModality(Modality):
    """A remote node with Orthanc's ``RemoteModalityParameters``. Of the extra fields the hub uses
    ``local_aet`` (our calling AE title towards it) and ``timeout`` (seconds, 0 = the [dicom]
    timeouts); the others are kept and reported as declared."""

    manufacturer: str = "Generic"
    allow_find_worklist: bool = True
    allow_n_action: bool = True
    allow_event_report: bool = True
    allow_transcoding: bool = True
    local_aet: str = ""
    timeout: int = 0
    use_dicom_tls: bool = False

    @classmethod
    def of(cls, m: Modality) -> RemoteModality:
        return m if isinstance(m, RemoteModality) else cls(**dataclasses.asdict(m))

    def validate(self) -> RemoteModality:
        """Raise ``bad_request`` naming the first unusable field; returns self."""
        if not 1 <= len(self.name) <= 64 or "/" in self.name or self.name.strip() != self.name:
            raise HubError("bad_request", f"modality name must have 1-64 characters, no '/', got {self.name!r}")
        if not _AET_RE.match(self.aet) or self.aet.strip() != self.aet:
            raise HubError("bad_request", f"AET must have 1-16 characters, no backslash, got {self.aet!r}")
        if not self.host.strip():
            raise HubError("bad_request", "Host must not be empty")
        if not 1 <= self.port <= 65534:
            raise HubError("bad_request", f"A TCP port number must be in range [1..65534], but found: {self.port}")
        if self.manufacturer not in MANUFACTURERS:
            raise HubError("bad_request", f'Unknown modality manufacturer: "{self.manufacturer}"')
        if self.local_aet and (not _AET_RE.match(self.local_aet) or self.local_aet.strip() != self.local_aet):
            raise HubError("bad_request", f"LocalAet must have 1-16 characters, got {self.local_aet!r}")
        if self.timeout < 0:
            raise HubError("bad_request", "Timeout must not be negative")
        return self


class ModalityStore(Protocol):
    """The persistence of the run-time declarations (:class:`hub.store.modalities.ModalityRepository`)."""

    def exists(self) -> bool: ...

    def rows(self) -> list[dict[str, Any]]: ...

    def put(self, values: dict[str, Any]) -> None: ...

    def remove(self, name: str) -> bool: ...


_FIELDS = tuple(f.name for f in dataclasses.fields(RemoteModality))


class ModalityDirectory:
    """The modality registry. ``strict=False``: a registry that cannot be read (no database yet,
    PostgreSQL down) leaves the settings entries only, with a warning, instead of failing."""

    def __init__(self, settings: Settings, store: ModalityStore | None = None, *, strict: bool = True,
                 refresh_seconds: float = 2.0) -> None:
        self._configured = {name: RemoteModality.of(m) for name, m in settings.modalities.items()}
        self.check_calling = settings.dicom.check_calling
        self._store = store
        self._strict = strict
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._merged: dict[str, RemoteModality] | None = None
        self._loaded_at = 0.0

    # ------------------------------------------------------------------ reading
    @property
    def modalities(self) -> dict[str, RemoteModality]:
        """Every current modality by name, in name order."""
        merged = self._merged
        if merged is not None and (self._store is None or time.monotonic() - self._loaded_at < self._refresh):
            return merged
        with self._lock:
            merged = dict(self._configured)
            if self._store is not None:
                for row in self._rows():
                    name = row["name"]
                    if row["removed"]:
                        merged.pop(name, None)
                    else:
                        merged[name] = RemoteModality(**{k: row[k] for k in _FIELDS})
            self._merged = dict(sorted(merged.items()))
            self._loaded_at = time.monotonic()
            return self._merged

    def _rows(self) -> list[dict[str, Any]]:
        assert self._store is not None
        if self._strict:
            return self._store.rows()
        try:
            if not self._store.exists():  # a database no hub has opened yet: nothing declared there
                self._store = None
                return []
            return self._store.rows()
        except Exception as exc:  # noqa: BLE001 - any database failure: fall back to the settings
            log.warning("modalities declared at run time are not readable (%s): using [modalities] only",
                        type(exc).__name__)
            self._store = None
            return []

    def get(self, name: str) -> RemoteModality | None:
        return self.modalities.get(name)

    def require(self, name: str) -> RemoteModality:
        m = self.get(name)
        if m is None:
            raise HubError("unknown_resource", f"unknown modality {name!r} (not in [modalities])")
        return m

    def by_aet(self, aet: str) -> list[RemoteModality]:
        return [m for m in self.modalities.values() if m.aet == aet.strip()]

    def known_hosts(self) -> set[str]:
        out: set[str] = set()
        for m in self.modalities.values():
            out |= _addresses(m.host)
        return out

    def live_hosts(self) -> Set[str]:
        """The hosts of the current modalities, re-read on every membership test (the DIMSE
        acceptor's allow-list with ``check_calling``)."""
        return _LiveHosts(self)

    def calling_aets(self) -> Sequence[str]:
        """The current AE titles, re-read on every use (pynetdicom's ``require_calling_aet``);
        with none declared, one title no peer can have, so that every association is refused."""
        return _LiveAets(self)

    def match(self, aet: str, ip: str) -> RemoteModality | None:
        """The declared modality with this AE title whose host resolves to ``ip``."""
        for m in self.by_aet(aet):
            if ip in _addresses(m.host) or m.host == ip:
                return m
        return None

    def allows(self, aet: str, ip: str, permission: str) -> bool:
        """Orthanc semantics: with the calling check off, anyone may; otherwise the declared
        (AE title, host) pair must exist and carry ``allow_<permission>``."""
        if permission not in PERMISSIONS:
            raise ValueError(permission)
        if not self.check_calling:
            return True
        m = self.match(aet, ip)
        return bool(m and getattr(m, f"allow_{permission}"))

    # ------------------------------------------------------------------ writing
    def put(self, modality: RemoteModality) -> None:
        """Declare or replace ``modality`` (Orthanc ``PUT /modalities/{name}``), persistently."""
        modality.validate()
        self._writable().put({**dataclasses.asdict(modality), "removed": False})
        self._merged = None

    def remove(self, name: str) -> None:
        """Delete a modality (Orthanc ``DELETE /modalities/{name}``); 404 when unknown."""
        self.require(name)
        store = self._writable()
        if name in self._configured:
            blank = {f.name: f.default for f in dataclasses.fields(RemoteModality)
                     if f.default is not dataclasses.MISSING}
            store.put({**blank, "name": name, "aet": "", "host": "", "removed": True})
        else:
            store.remove(name)
        self._merged = None

    def _writable(self) -> ModalityStore:
        if self._store is None:
            raise HubError("bad_request", "modalities can only be changed in the configuration file here")
        return self._store


class _LiveHosts(Set[str]):
    def __init__(self, directory: ModalityDirectory) -> None:
        self._directory = directory

    def __contains__(self, host: object) -> bool:
        return host in self._directory.known_hosts()

    def __iter__(self) -> Iterator[str]:
        return iter(self._directory.known_hosts())

    def __len__(self) -> int:
        return len(self._directory.known_hosts())


class _LiveAets(Sequence[str]):
    def __init__(self, directory: ModalityDirectory) -> None:
        self._directory = directory

    def _values(self) -> list[str]:
        return sorted({m.aet for m in self._directory.modalities.values()}) or ["\x00"]

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence protocol (int or slice)
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())
