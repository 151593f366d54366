"""Where an object came from (Orthanc's ``RequestOrigin``), recorded with every stored instance."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    protocol: str  # dimse | dicomweb | rest | import | hl7 | fhir
    remote_aet: str = ""
    remote_ip: str = ""
    called_aet: str = ""
    user: str = ""

    def describe(self) -> str:
        """A log-safe one-liner (no PHI)."""
        parts = [self.protocol]
        if self.remote_aet:
            parts.append(f"aet={self.remote_aet}")
        if self.remote_ip:
            parts.append(f"ip={self.remote_ip}")
        if self.user:
            parts.append(f"user={self.user}")
        return " ".join(parts)
