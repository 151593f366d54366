"""Remote DICOM nodes from ``[modalities]``: who may associate, and what each may do."""

from __future__ import annotations

import socket
from functools import lru_cache

from hub.settings import Modality, Settings

PERMISSIONS = ("echo", "find", "move", "get", "store")


@lru_cache(maxsize=256)
def _addresses(host: str) -> frozenset[str]:
    try:
        return frozenset(info[4][0] for info in socket.getaddrinfo(host, None))
    except OSError:
        return frozenset({host})


class ModalityDirectory:
    def __init__(self, settings: Settings) -> None:
        self.modalities = dict(settings.modalities)
        self.check_calling = settings.dicom.check_calling

    def get(self, name: str) -> Modality | None:
        return self.modalities.get(name)

    def by_aet(self, aet: str) -> list[Modality]:
        return [m for m in self.modalities.values() if m.aet == aet.strip()]

    def known_hosts(self) -> set[str]:
        out: set[str] = set()
        for m in self.modalities.values():
            out |= _addresses(m.host)
        return out

    def match(self, aet: str, ip: str) -> Modality | None:
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
