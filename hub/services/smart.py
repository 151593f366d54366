"""SMART on FHIR resource scopes (SMART App Launch 2.x, "Scopes and Launch Context", with the v1 syntax).

A scope ``context/ResourceType.permissions[?params]`` grants FHIR interactions:

* context: ``patient`` (only the patient of the launch context, the token's ``patient`` claim),
  ``user`` (what the user may see; the hub has no per-user ACL, so treated as all data) or ``system``
  (all data, backend services).
* resource type: a FHIR type name or ``*``.
* permissions: v1 ``read`` (= v2 ``rs``), ``write`` (= ``cud``), ``*`` (= ``cruds``); v2 a non-empty
  subset of ``c r u d s`` written in that order (the spec's canonical order). Out-of-order or
  repeated letters (``rsc``, ``rr``) are malformed and grant nothing.
* v2 query parameters (``patient/Observation.rs?category=...``) narrow a grant to matching resources.
  The hub cannot filter results by them, so such a scope is parsed but grants nothing (fail closed,
  as the spec prefers a narrower grant to a wider one).

authlib's ``BearerTokenValidator.scope_insufficient`` compares scope strings literally, so
``patient/*.read`` would not satisfy a required ``patient/ImagingStudy.read``; these semantics are
implemented here instead, on authlib's ``scope_to_list`` splitting (RFC 6749 3.3).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from hub.errors import HubError

with warnings.catch_warnings():  # authlib 1.x announces joserfc for 2.0 on import
    warnings.simplefilter("ignore")
    from authlib.oauth2.rfc6749.util import scope_to_list

CONTEXTS = ("patient", "user", "system")
CANONICAL = "cruds"
V1_PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset("rs"),
    "write": frozenset("cud"),
    "*": frozenset(CANONICAL),
}
# FHIR RESTful interactions (R4 3.1.0) -> SMART v2 permission letter.
INTERACTIONS: dict[str, str] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)(?:\?(.*))?$", re.DOTALL)
_V2 = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True)
class ScopeGrant:
    """One parsed resource scope."""

    context: str  # patient | user | system
    resource_type: str  # FHIR type or "*"
    permissions: frozenset[str]  # subset of "cruds"
    params: tuple[tuple[str, str], ...] = ()  # v2 query parameters (unenforceable here: grant nothing)
    scope: str = ""  # the scope as written

    def covers(self, resource_type: str, letter: str) -> bool:
        return not self.params and letter in self.permissions and self.resource_type in ("*", resource_type)


@dataclass(frozen=True)
class ParsedScopes:
    grants: tuple[ScopeGrant, ...]
    malformed: tuple[str, ...]  # starts with patient/ user/ system/ but does not parse: grants nothing
    other: tuple[str, ...]  # openid, fhirUser, launch/patient, offline_access, ...

    @property
    def smart(self) -> bool:
        """Whether the token asked for SMART resource access at all (valid or not)."""
        return bool(self.grants or self.malformed)


class InsufficientScope(HubError):
    """RFC 6750 3.1 ``insufficient_scope``: HTTP 403."""

    def __init__(self, message: str) -> None:
        super().__init__("forbidden", message)


def parse_scope(scope: str) -> ScopeGrant | None:
    """Parse one resource scope; ``None`` when it is not one or is malformed."""
    m = _SCOPE.match(scope)
    if m is None:
        return None
    context, resource_type, perms, query = m.groups()
    if perms in V1_PERMISSIONS:
        permissions = V1_PERMISSIONS[perms]
    elif _V2.match(perms) and perms:
        permissions = frozenset(perms)
    else:
        return None
    params: tuple[tuple[str, str], ...] = ()
    if query is not None:
        try:
            params = tuple(parse_qsl(query, keep_blank_values=False, strict_parsing=True))
        except ValueError:
            return None
        if not params:
            return None
    return ScopeGrant(context, resource_type, permissions, params, scope)


def parse_scopes(raw: object) -> ParsedScopes:
    """Parse a ``scope`` claim: a space-separated string (RFC 9068 2.2.3) or a list of strings."""
    if isinstance(raw, str | list | tuple | set):
        items = [s for s in scope_to_list(raw) if isinstance(s, str) and s]
    else:
        items = []
    grants: list[ScopeGrant] = []
    malformed: list[str] = []
    other: list[str] = []
    for item in items:
        grant = parse_scope(item)
        if grant is not None:
            grants.append(grant)
        elif item.split("/", 1)[0] in CONTEXTS and "/" in item:
            malformed.append(item)
        else:
            other.append(item)
    return ParsedScopes(tuple(grants), tuple(malformed), tuple(other))


def scope_claim(claims: Mapping[str, object]) -> object:
    """The token's scopes: ``scope`` (RFC 9068), else ``scp`` (a list, as some IdPs issue)."""
    raw = claims.get("scope")
    return raw if raw is not None else claims.get("scp")


def launch_patient(claims: Mapping[str, object]) -> str | None:
    """The patient of the launch context (``patient`` claim, a FHIR Patient id), if any."""
    value = claims.get("patient")
    return value if isinstance(value, str) and value else None


def interaction_letter(interaction: str) -> str:
    try:
        return INTERACTIONS[interaction]
    except KeyError:
        raise ValueError(f"unknown FHIR interaction {interaction!r}") from None


def granting_contexts(grants: Iterable[ScopeGrant], resource_type: str, interaction: str) -> frozenset[str]:
    """The contexts (patient/user/system) whose grants allow ``interaction`` on ``resource_type``."""
    letter = interaction_letter(interaction)
    return frozenset(g.context for g in grants if g.covers(resource_type, letter))


def allows(grants: Iterable[ScopeGrant], resource_type: str, interaction: str) -> bool:
    """Whether any grant allows ``interaction`` (read/search/create/update/delete) on ``resource_type``."""
    return bool(granting_contexts(grants, resource_type, interaction))


def access(
    grants: Iterable[ScopeGrant], resource_type: str, interaction: str, patient: str | None
) -> frozenset[str] | None:
    """``None`` when unrestricted (a system/ or user/ grant), else the Patient ids the caller may see.

    Raises :class:`InsufficientScope` when no grant allows it, or only patient/ grants do and the
    token carries no patient in launch context.
    """
    contexts = granting_contexts(grants, resource_type, interaction)
    if "system" in contexts or "user" in contexts:
        return None
    letter = INTERACTIONS[interaction]
    if "patient" in contexts:
        if patient is None:
            raise InsufficientScope(
                f"Insufficient scope: patient/{resource_type}.{letter} needs a patient in launch context"
            )
        return frozenset({patient})
    raise InsufficientScope(
        f"Insufficient scope for {interaction} on {resource_type}: needs a SMART scope such as "
        f"system/{resource_type}.{letter}, user/{resource_type}.{letter} or patient/{resource_type}.{letter}"
    )
