"""DICOM upper-layer adapter (pynetdicom): one handler module per DIMSE service."""
