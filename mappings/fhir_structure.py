"""Plain R4 structure check of ordinary ServiceRequest / Patient bodies, without the R4B models.

Primitive formats of R4 datatypes.html (string, code, uri, id, boolean, date, dateTime regular expressions),
complex datatypes of datatypes.html (Coding, CodeableConcept, Identifier, Reference, HumanName...), elements
and cardinalities of R4 servicerequest.html and patient.html. A body made only of these is valid; any other
body goes to ``fhir_values.validate`` (the R4B models), which decides.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from mappings.fhir_values import validate

# The elements of ordinary ServiceRequest / Patient bodies (R4 datatypes.html formats; as strict as the R4B
# models or stricter: full dates, seconds, no nulls or empty arrays). A body of only these is valid, checked in
# plain Python; any other body (another element, an extension, a partial date...) goes to the R4B models.
_STRING = re.compile(r"[ \r\n\t\S]+").fullmatch
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*").fullmatch
_DATE = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
_DATETIME = re.compile(_DATE + r"(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
                       r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?").fullmatch


def _calendar(value: str) -> bool:
    try:
        return bool(date.fromisoformat(value[:10]))
    except ValueError:
        return False


_PRIMITIVES: dict[str, Any] = {
    "string": lambda v: type(v) is str and _STRING(v) is not None,
    "code": lambda v: type(v) is str and _CODE(v) is not None,
    "uri": lambda v: type(v) is str and re.fullmatch(r"\S+", v) is not None,
    "id": lambda v: type(v) is str and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", v) is not None,
    "boolean": lambda v: type(v) is bool,
    "date": lambda v: type(v) is str and len(v) == 10 and _DATETIME(v) is not None and _calendar(v),
    "dateTime": lambda v: type(v) is str and _DATETIME(v) is not None and _calendar(v),
}
_REF, _CC = "Reference", "CodeableConcept"
_TYPES: dict[str, dict[str, Any]] = {
    "Coding": {"system": "uri", "version": "string", "code": "code", "display": "string", "userSelected": "boolean"},
    _CC: {"coding": ["Coding"], "text": "string"},
    "Period": {"start": "dateTime", "end": "dateTime"},
    "Identifier": {"use": "code", "type": _CC, "system": "uri", "value": "string", "period": "Period",
                   "assigner": _REF},
    _REF: {"reference": "string", "type": "uri", "identifier": "Identifier", "display": "string"},
    "HumanName": {"use": "code", "text": "string", "family": "string", "given": ["string"], "prefix": ["string"],
                  "suffix": ["string"], "period": "Period"},
    "ContactPoint": {"system": "code", "value": "string", "use": "code", "period": "Period"},
    "Address": {"use": "code", "type": "code", "text": "string", "line": ["string"], "city": "string",
                "district": "string", "state": "string", "postalCode": "string", "country": "string",
                "period": "Period"},
    "Annotation": {"authorString": "string", "authorReference": _REF, "time": "dateTime", "text": "string"},
    "Patient": {"resourceType": "code", "id": "id", "identifier": ["Identifier"], "active": "boolean",
                "name": ["HumanName"], "telecom": ["ContactPoint"], "gender": "code", "birthDate": "date",
                "address": ["Address"]},
    "ServiceRequest": {
        "resourceType": "code", "id": "id", "contained": ["Patient"], "identifier": ["Identifier"],
        "basedOn": [_REF], "replaces": [_REF], "requisition": "Identifier", "status": "code", "intent": "code",
        "category": [_CC], "priority": "code", "doNotPerform": "boolean", "code": _CC, "orderDetail": [_CC],
        "subject": _REF, "encounter": _REF, "occurrenceDateTime": "dateTime", "occurrencePeriod": "Period",
        "authoredOn": "dateTime", "requester": _REF, "performerType": _CC, "performer": [_REF],
        "locationCode": [_CC], "locationReference": [_REF], "reasonCode": [_CC], "reasonReference": [_REF],
        "insurance": [_REF], "supportingInfo": [_REF], "specimen": [_REF], "bodySite": [_CC], "note": ["Annotation"],
        "patientInstruction": "string", "relevantHistory": [_REF]},
}
_REQUIRED = {"ServiceRequest": ("status", "intent", "subject"), "Annotation": ("text",)}
_ONE_OF = {"ServiceRequest": ("occurrenceDateTime", "occurrencePeriod"),
           "Annotation": ("authorString", "authorReference")}


def _fits(value: Any, kind: Any) -> bool:  # noqa: ANN401 - parsed JSON
    if isinstance(kind, list):
        return type(value) is list and bool(value) and all(_fits(v, kind[0]) for v in value)
    check = _PRIMITIVES.get(kind)
    if check is not None:
        return bool(check(value))
    fields = _TYPES[kind]
    if type(value) is not dict or not value or ("resourceType" in fields and value.get("resourceType") != kind):
        return False
    return all(k in fields and _fits(v, fields[k]) for k, v in value.items()) \
        and all(k in value for k in _REQUIRED.get(kind, ())) and sum(k in value for k in _ONE_OF.get(kind, ())) <= 1


def plainly_valid(resource: Any, resource_type: str) -> bool:  # noqa: ANN401 - parsed JSON
    """True when ``resource`` is an R4 ``resource_type`` made only of the common elements checked here (no
    model validation needed); False says nothing: the R4B models decide (``fhir_values.validate``)."""
    return resource_type in ("ServiceRequest", "Patient") and _fits(resource, resource_type)


def check(resource: Any, resource_type: str) -> None:  # noqa: ANN401 - parsed JSON
    """Validate: the plain check for ordinary bodies, else the R4B models (FhirInputError naming the element)."""
    if not plainly_valid(resource, resource_type):
        validate(resource, resource_type)
