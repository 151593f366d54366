"""FHIR R4 at ``/fhir``: one Blueprint (:data:`common.bp`); each resource module registers its routes
and its CapabilityStatement entry on import."""

from __future__ import annotations

from flask import Blueprint

from interfaces.http.fhir import endpoint, imaging_study, metadata, patient, routes, service_request, smart
from interfaces.http.fhir.common import bp

__all__ = ["blueprint", "bp", "endpoint", "imaging_study", "metadata", "patient", "routes", "service_request",
           "smart"]


def blueprint() -> Blueprint:
    """The FHIR Blueprint with every resource module imported (register it once on the app)."""
    return bp
