"""Tests of mappings.fhir_values.validate (R4B models) on contained resources: R4 json.html requires a
``resourceType`` naming a concrete resource in every resource, a contained one too (R4 references.html)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pytest

from mappings.fhir_values import FhirInputError, date_range, validate
from mappings.imaging_study_to_order import imaging_study_to_order

PATIENT = {"resourceType": "Patient", "id": "p", "identifier": [{"system": "urn:oid:1.2.3", "value": "PID1"}]}
BODIES: dict[str, dict[str, Any]] = {
    "ServiceRequest": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                       "subject": {"reference": "#p"}, "contained": [PATIENT]},
    "ImagingStudy": {"resourceType": "ImagingStudy", "status": "registered", "subject": {"reference": "#p"},
                     "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.99.8"}],
                     "contained": [PATIENT]},
    "Patient": {"resourceType": "Patient", "identifier": [{"value": "PID2"}],
                "contained": [{"resourceType": "Organization", "id": "o", "name": "Clinic"}]},
}
# contained items the R4B models fail on (KeyError, TypeError) or take as a bare abstract Resource
BAD_ITEMS = [
    pytest.param({"id": "p"}, id="no-resourceType"),
    pytest.param({"resourceType": "Nonsense", "id": "p"}, id="unknown"),
    pytest.param({"resourceType": "patient", "id": "p"}, id="wrong-case"),
    pytest.param({"resourceType": None, "id": "p"}, id="null"),
    pytest.param({"resourceType": 1, "id": "p"}, id="number"),
    pytest.param({"resourceType": {}, "id": "p"}, id="object"),
    pytest.param({"resourceType": "Resource", "id": "p"}, id="abstract-Resource"),
    pytest.param({"resourceType": "DomainResource", "id": "p"}, id="abstract-DomainResource"),
]


@pytest.mark.parametrize("kind", list(BODIES))
def test_valid_contained_resources_pass(kind: str):
    validate(copy.deepcopy(BODIES[kind]), kind)  # raises on failure


@pytest.mark.parametrize("kind", list(BODIES))
@pytest.mark.parametrize("item", BAD_ITEMS)
def test_contained_without_known_resource_type_is_invalid(kind: str, item: dict[str, Any]):
    body = {**copy.deepcopy(BODIES[kind]), "contained": [copy.deepcopy(item)]}
    with pytest.raises(FhirInputError) as exc:
        validate(body, kind)
    assert (exc.value.code, exc.value.expression) == ("invalid", f"{kind}.contained")
    assert exc.value.diagnostics == "a contained resource needs a known resourceType"


@pytest.mark.parametrize("item", BAD_ITEMS)
def test_nested_contained_without_known_resource_type_is_invalid(item: dict[str, Any]):
    body = copy.deepcopy(BODIES["ServiceRequest"])
    body["contained"][0]["contained"] = [copy.deepcopy(item)]
    with pytest.raises(FhirInputError) as exc:
        validate(body, "ServiceRequest")
    assert (exc.value.code, exc.value.expression) == ("invalid", "ServiceRequest.contained")


def test_other_contained_errors_still_name_the_element():
    body = {**copy.deepcopy(BODIES["ServiceRequest"]), "contained": [{**PATIENT, "bogus": 1}]}
    with pytest.raises(FhirInputError) as exc:
        validate(body, "ServiceRequest")
    assert exc.value.expression == "ServiceRequest.contained.0.bogus"
    with pytest.raises(FhirInputError) as exc:
        validate({**body, "contained": PATIENT}, "ServiceRequest")
    assert exc.value.expression == "ServiceRequest.contained"


def test_imaging_study_with_untyped_contained_is_not_scheduled():
    """Before the fix the models accepted a contained item without resourceType: the study was scheduled."""
    study = {**copy.deepcopy(BODIES["ImagingStudy"]), "subject": {"identifier": {"value": "PID8"}}}
    assert imaging_study_to_order(study).study_uid == "1.2.840.99.8"
    with pytest.raises(FhirInputError) as exc:
        imaging_study_to_order({**study, "contained": [{"id": "d", "deviceName": [{"name": "US1",
                                                                                   "type": "user-friendly-name"}]}]})
    assert (exc.value.code, exc.value.expression) == ("invalid", "ImagingStudy.contained")


@pytest.mark.parametrize("value", ["2025-13", "2025-00", "2025-02-30", "0000", "2025-13-01"])
def test_date_range_refuses_impossible_dates(value: str):
    """A search date that cannot exist is the caller's error (400), not a ValueError (500)."""
    with pytest.raises(FhirInputError):
        date_range(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("9999", (datetime(9999, 1, 1), datetime.max)), ("9999-12-31", (datetime(9999, 12, 31), datetime.max)),
    ("9999-12-31T23:59:59-14:00", (datetime.max, datetime.max)),
    ("0001-01-01T00:00:00+01:00", (datetime.min, datetime.min)),
    ("2030-12", (datetime(2030, 12, 1), datetime(2031, 1, 1))),
])
def test_date_range_stops_at_the_ends_of_the_calendar(value: str, expected: tuple[datetime, datetime]):
    """Valid FHIR dates whose range (in UTC) runs past year 9999 or before year 1 end there."""
    assert date_range(value) == expected
