"""SMART App Launch scope semantics (v1 and v2 syntax), where authlib's literal match falls short."""

from __future__ import annotations

import warnings

import pytest

from hub.errors import HubError
from hub.services.smart import (
    InsufficientScope,
    access,
    allows,
    granting_contexts,
    launch_patient,
    parse_scope,
    parse_scopes,
    scope_claim,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.oauth2.rfc6750 import BearerTokenValidator


def grants(scope: str):  # noqa: ANN201
    return parse_scopes(scope).grants


@pytest.mark.parametrize(
    ("scope", "context", "rtype", "perms"),
    [
        ("patient/ImagingStudy.read", "patient", "ImagingStudy", "rs"),
        ("user/Patient.write", "user", "Patient", "cud"),
        ("system/*.read", "system", "*", "rs"),
        ("system/*.*", "system", "*", "cruds"),
        ("patient/ImagingStudy.rs", "patient", "ImagingStudy", "rs"),
        ("system/*.cruds", "system", "*", "cruds"),
        ("user/ServiceRequest.cu", "user", "ServiceRequest", "cu"),
        ("patient/Observation.s", "patient", "Observation", "s"),
    ],
)
def test_parse_v1_and_v2(scope: str, context: str, rtype: str, perms: str):
    g = parse_scope(scope)
    assert g is not None
    got = (g.context, g.resource_type, g.permissions, g.params, g.scope)
    assert got == (context, rtype, frozenset(perms), (), scope)


@pytest.mark.parametrize(
    "scope",
    [
        "patient/Observation.rsc",  # v2 letters out of canonical order
        "patient/Observation.rr",  # repeated letter
        "patient/Observation.",
        "patient/Observation",
        "patient/Observation.x",
        "patient/Observation.readwrite",
        "patient/observation.read",  # resource types start upper-case
        "patient/Obs-ervation.read",
        "admin/Patient.read",  # not a SMART context
        "patient/*.r*",
        "patient/Observation.rs?",  # empty query
        "patient/Observation.rs?category",  # no value
        "Patient.read",
    ],
)
def test_malformed_scopes_grant_nothing(scope: str):
    assert parse_scope(scope) is None
    parsed = parse_scopes(f"openid {scope}")
    assert parsed.grants == ()
    assert parsed.other[0] == "openid"


def test_malformed_smart_scope_still_marks_a_smart_token():
    parsed = parse_scopes("openid fhirUser patient/Observation.rsc launch/patient")
    assert parsed.malformed == ("patient/Observation.rsc",)
    assert parsed.other == ("openid", "fhirUser", "launch/patient")
    assert parsed.smart
    assert not parse_scopes("openid fhirUser launch/patient offline_access").smart


def test_scope_claim_as_string_list_or_scp():
    as_str = parse_scopes(scope_claim({"scope": "  patient/ImagingStudy.rs   system/Patient.read "}))
    as_list = parse_scopes(scope_claim({"scope": ["patient/ImagingStudy.rs", "system/Patient.read"]}))
    as_scp = parse_scopes(scope_claim({"scp": ["patient/ImagingStudy.rs", "system/Patient.read"]}))
    assert as_str == as_list == as_scp
    assert [g.scope for g in as_str.grants] == ["patient/ImagingStudy.rs", "system/Patient.read"]
    assert parse_scopes(None).grants == () and parse_scopes(42).grants == ()


def test_wildcard_resource_allows_any_type():
    g = grants("patient/*.read")
    assert allows(g, "ImagingStudy", "search")
    assert allows(g, "Patient", "read")
    assert not allows(g, "ImagingStudy", "create")


def test_v2_letters_map_to_interactions():
    g = grants("patient/ImagingStudy.rs")
    assert allows(g, "ImagingStudy", "read") and allows(g, "ImagingStudy", "search")
    assert allows(g, "ImagingStudy", "vread") and allows(g, "ImagingStudy", "history")
    for interaction in ("create", "update", "patch", "delete"):
        assert not allows(g, "ImagingStudy", interaction)
    assert not allows(g, "Patient", "read")  # another type
    only_search = grants("user/ImagingStudy.s")
    assert allows(only_search, "ImagingStudy", "search") and not allows(only_search, "ImagingStudy", "read")


def test_v1_write_is_cud_without_read():
    g = grants("user/ServiceRequest.write")
    assert allows(g, "ServiceRequest", "create") and allows(g, "ServiceRequest", "update")
    assert allows(g, "ServiceRequest", "delete")
    assert not allows(g, "ServiceRequest", "read") and not allows(g, "ServiceRequest", "search")


def test_system_cruds_allows_everything():
    g = grants("system/*.cruds")
    for interaction in ("read", "search", "create", "update", "delete"):
        assert allows(g, "Endpoint", interaction)
    assert access(g, "ImagingStudy", "delete", None) is None


def test_grants_combine_across_scopes():
    g = grants("patient/ImagingStudy.r patient/ImagingStudy.s system/Patient.c")
    assert allows(g, "ImagingStudy", "read") and allows(g, "ImagingStudy", "search")
    assert granting_contexts(g, "Patient", "create") == {"system"}
    assert not allows(g, "Patient", "read")


def test_unknown_interaction_is_a_programming_error():
    with pytest.raises(ValueError):
        allows(grants("system/*.*"), "Patient", "operate")


def test_authlib_literal_match_pitfalls():
    """authlib's check compares strings; SMART needs wildcard and permission semantics."""
    literal = BearerTokenValidator.scope_insufficient
    # A wildcard grant is not literally the required scope: authlib refuses, SMART allows.
    assert literal("patient/*.read", ["patient/ImagingStudy.read"])
    assert allows(grants("patient/*.read"), "ImagingStudy", "search")
    # v2 "rs" is the v1 "read": not the same string.
    assert literal("patient/ImagingStudy.rs", ["patient/ImagingStudy.read"])
    assert allows(grants("patient/ImagingStudy.rs"), "ImagingStudy", "read")
    # "cruds" contains "r" but literal matching cannot see a subset of letters.
    assert literal("system/*.cruds", ["system/ImagingStudy.r"])
    assert allows(grants("system/*.cruds"), "ImagingStudy", "read")
    # And a literal match would accept a malformed out-of-order scope if it were the one required.
    assert not literal("patient/Observation.rsc", ["patient/Observation.rsc"])
    assert not allows(grants("patient/Observation.rsc"), "Observation", "read")


def test_query_parameters_are_parsed_but_grant_nothing():
    scope = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    g = parse_scope(scope)
    assert g is not None
    assert g.params == (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)
    assert not allows([g], "Observation", "search")  # narrowing we cannot enforce: fail closed
    assert parse_scopes(scope).smart
    with pytest.raises(InsufficientScope):
        access([g], "Observation", "search", "p1")


def test_patient_context_limits_to_launch_patient():
    g = grants("patient/ImagingStudy.rs")
    assert access(g, "ImagingStudy", "search", "pat-123") == {"pat-123"}
    with pytest.raises(InsufficientScope) as exc:
        access(g, "ImagingStudy", "search", None)
    assert exc.value.http_status == 403 and "launch context" in exc.value.message


def test_system_and_user_scopes_are_unrestricted():
    assert access(grants("system/*.read"), "ImagingStudy", "search", None) is None
    assert access(grants("user/ImagingStudy.rs"), "ImagingStudy", "read", None) is None  # hub has no user ACL
    # A system grant wins over a patient grant for the same interaction.
    both = grants("patient/*.rs system/ImagingStudy.s")
    assert access(both, "ImagingStudy", "search", "p1") is None
    assert access(both, "ImagingStudy", "read", "p1") == {"p1"}


def test_insufficient_scope_is_a_403_hub_error_naming_the_need():
    with pytest.raises(HubError) as exc:
        access(grants("patient/ImagingStudy.rs"), "ImagingStudy", "create", "p1")
    assert exc.value.code == "forbidden" and exc.value.http_status == 403
    assert "patient/ImagingStudy.c" in exc.value.message and "p1" not in exc.value.message


def test_launch_patient_claim():
    assert launch_patient({"patient": "abc"}) == "abc"
    assert launch_patient({"patient": ""}) is None
    assert launch_patient({"patient": ["abc"]}) is None
    assert launch_patient({}) is None
