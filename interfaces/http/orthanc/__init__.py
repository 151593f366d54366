"""Orthanc-compatible REST API (routes, ids and JSON shapes of Orthanc 1.10)."""
