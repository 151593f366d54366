"""SMART on FHIR authorization of ``/fhir`` routes (SMART App Launch 2.x scopes, RFC 6750 3.1).

Every FHIR route calls :func:`authorize` after the app's authentication (``g.principal``):

* HTTP Basic, or ``[http] open``: unrestricted (the hub's own users; the role gate of the app applies).
* Bearer JWT whose roles claim names ``admin`` explicitly: unrestricted.
* Bearer JWT with SMART resource scopes (``patient/``, ``user/``, ``system/``): the scopes decide
  (:mod:`hub.services.smart`); ``patient/`` grants are limited to the token's ``patient`` claim.
  A malformed SMART scope grants nothing; it still makes the token a SMART token.
* Bearer JWT without any SMART resource scope: unrestricted when the principal has the ``user``
  (or ``admin``) role, as on the rest of the API (``default_role`` applies when the token has no roles
  claim); otherwise 403.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import current_app, g

from hub.app import Hub
from hub.errors import HubError
from hub.services import smart


def authorize(resource_type: str, interaction: str) -> set[str] | None:
    """``None`` when unrestricted, else the FHIR Patient ids the caller may see.

    ``interaction``: read, vread, history, search, create, update, patch or delete.
    Raises :class:`HubError` ``forbidden`` (403) when the scopes do not allow it.
    """
    smart.interaction_letter(interaction)  # a programming error, not the caller's: ValueError
    principal = getattr(g, "principal", None)
    if principal is None:
        raise HubError("unauthorized", "Authentication required")
    if principal.via != "bearer":
        return None
    hub: Hub = current_app.extensions["rishub"]
    claims = principal.claims
    if "admin" in _claimed_roles(claims, hub.settings.auth.jwt.roles_claim):
        return None
    scopes = smart.parse_scopes(smart.scope_claim(claims))
    if not scopes.smart:
        if principal.has("user"):
            return None
        raise smart.InsufficientScope(
            f"Insufficient scope for {interaction} on {resource_type}: the token has no SMART scope "
            "and no 'user' role"
        )
    allowed = smart.access(scopes.grants, resource_type, interaction, smart.launch_patient(claims))
    return None if allowed is None else set(allowed)


def _claimed_roles(claims: Mapping[str, object], name: str) -> set[str]:
    """Roles the token names itself (not the configured ``default_role``)."""
    raw = claims.get(name)
    if isinstance(raw, str):
        return set(raw.replace(",", " ").split())
    if isinstance(raw, list):
        return {str(r) for r in raw}
    return set()
