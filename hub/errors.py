"""One error table: each hub error maps to an HTTP status, a DIMSE status and an HL7 ACK code.

Adapters never invent codes: they catch :class:`HubError` and read ``http_status``,
``dimse_status`` or ``hl7_ack`` from it. DIMSE codes follow PS3.4 Annex B (Storage), PS3.7 C
(general statuses); HL7 codes follow HL7 v2.5.1 Table 0008 (AA/AE/AR) and Table 0357 (ERR-3).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    name: str
    http_status: int
    dimse_status: int
    hl7_ack: str  # AE (application error) or AR (application reject)
    hl7_err_code: str  # HL7 Table 0357 message error condition code
    description: str


# name -> codes. Orthanc maps its own errors to HTTP in a similar single table.
TABLE: dict[str, ErrorCode] = {
    e.name: e
    for e in (
        ErrorCode("bad_request", 400, 0xC000, "AE", "207", "The request cannot be understood"),
        ErrorCode("bad_file_format", 400, 0xC000, "AE", "207", "Not a readable DICOM file"),
        ErrorCode("missing_attribute", 400, 0xA900, "AE", "101", "A required attribute is missing"),
        ErrorCode("invalid_attribute", 400, 0xA900, "AE", "102", "An attribute has an invalid value"),
        ErrorCode("duplicate_instance", 409, 0x0111, "AE", "205", "The SOP Instance is already stored"),
        ErrorCode("unknown_resource", 404, 0xC000, "AE", "204", "Unknown resource"),
        # Query/Retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5): identifier problems are 0xA900, values that
        # cannot be processed 0xC000-range; a C-MOVE destination we do not know is 0xA801.
        ErrorCode("invalid_identifier", 400, 0xA900, "AE", "207", "Identifier does not match SOP Class"),
        ErrorCode("invalid_query_value", 400, 0xC001, "AE", "102", "A query key has a malformed value"),
        ErrorCode("unknown_destination", 400, 0xA801, "AE", "204", "Move destination unknown"),
        # A remote node we called as SCU failed (refused, rejected, timed out): a gateway error.
        ErrorCode("remote_failure", 502, 0xA702, "AE", "207", "The remote DICOM node failed the request"),
        ErrorCode("unauthorized", 401, 0x0124, "AR", "207", "Authentication required"),
        ErrorCode("forbidden", 403, 0x0124, "AR", "207", "Not authorized"),
        ErrorCode("sop_class_not_supported", 415, 0x0122, "AR", "200", "SOP Class not supported"),
        # HTTP content negotiation (RFC 9110 15.5.7, 15.5.16): no acceptable representation, or a
        # request body of a media type the route does not take.
        ErrorCode("not_acceptable", 406, 0xC000, "AR", "207", "No acceptable representation"),
        ErrorCode("unsupported_media_type", 415, 0xC000, "AR", "207", "Unsupported media type"),
        # FHIR RESTful API: a version/identity conflict, a failed If-Match / If-None-Exist precondition,
        # and a valid resource that breaks a business rule (e.g. revoking a completed order).
        ErrorCode("conflict", 409, 0xC000, "AE", "205", "The request conflicts with the resource's state"),
        ErrorCode("precondition_failed", 412, 0xC000, "AE", "207", "A precondition of the request failed"),
        ErrorCode("business_rule", 422, 0xC000, "AE", "207", "The request breaks a business rule"),
        # The render service (MPR/MIP) needs a series that is a volume: one orientation, one size, evenly
        # spaced slices along the normal (PS3.3 C.7.6.2.1.1); anything else is unprocessable.
        ErrorCode("not_a_volume", 422, 0xC000, "AE", "207", "The series is not a volume"),
        ErrorCode("busy", 503, 0xA700, "AE", "206", "Temporarily unable to answer; try again"),
        ErrorCode("out_of_resources", 507, 0xA700, "AE", "206", "Out of resources (disk or database)"),
        ErrorCode("internal", 500, 0xC001, "AE", "207", "Internal error"),
    )
}


class HubError(Exception):
    """An error the hub reports to a client; ``code`` is a key of :data:`TABLE`."""

    def __init__(self, code: str, message: str, *, attribute: str | None = None) -> None:
        if code not in TABLE:
            raise KeyError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.attribute = attribute  # keyword or tag of the offending attribute, never its value

    @property
    def info(self) -> ErrorCode:
        return TABLE[self.code]

    @property
    def http_status(self) -> int:
        return self.info.http_status

    @property
    def dimse_status(self) -> int:
        return self.info.dimse_status

    @property
    def hl7_ack(self) -> str:
        return self.info.hl7_ack

    def __str__(self) -> str:
        return self.message


class DuplicateInstance(HubError):
    def __init__(self, sop_instance_uid: str) -> None:
        super().__init__("duplicate_instance", "SOP Instance already stored (duplicate_policy=reject)")
        self.sop_instance_uid = sop_instance_uid


class StorageFailure(HubError):
    """The blob store or index could not make the data durable."""

    def __init__(self, message: str) -> None:
        super().__init__("out_of_resources", message)
