"""``create_app``: the Flask application over a :class:`hub.app.Hub` (auth first, then routes)."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request

from hub.app import Hub
from interfaces.http import auth, cors, errors, openapi
from interfaces.http.dicomweb import qido, rendered, stow, wado
from interfaces.http.fhir import blueprint as fhir_blueprint
from interfaces.http.fhir.common import auth_outcome
from interfaces.http.orthanc import (
    archive,
    content,
    jobs,
    modalities,
    modify,
    resources,
    system,
    tools,
    upload,
    worklists,
)
from interfaces.http.render import bp as render_bp

log = logging.getLogger(__name__)


def create_app(hub: Hub) -> Flask:
    app = Flask("rishub")
    app.extensions["rishub"] = hub
    app.config["MAX_CONTENT_LENGTH"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.install(app)
    cors.install(app, hub.settings.http.cors_origins)  # preflights are answered before authentication

    @app.before_request
    def _authenticate() -> Response | None:
        view = app.view_functions.get(request.endpoint) if request.endpoint else None
        if auth.is_public(hub, view):
            return None
        principal = auth.authenticate(hub, request)
        # FHIR clients read errors as OperationOutcome: every path under /fhir, a route of it or not
        fhir = request.blueprint == "fhir" or request.path == "/fhir" or request.path.startswith("/fhir/")
        if principal is None:
            resp = (auth_outcome if fhir else errors.error_response)(401, "Authentication required")
            resp.headers["WWW-Authenticate"] = auth.challenge(hub)
            return resp
        role = auth.required_role(request, view)
        if not principal.has(role):
            log.info("%s %s refused for %s (needs %s)", request.method, request.path, principal.name, role)
            return (auth_outcome if fhir else errors.error_response)(403, f"The '{role}' role is required")
        g.principal = principal
        return None

    for module in (openapi, system, resources, tools, content, archive, upload, modalities, jobs, modify, worklists):
        app.register_blueprint(module.bp)
    for module in (qido, wado, stow, rendered):
        app.register_blueprint(module.bp)
    app.register_blueprint(wado.root_bp)
    app.register_blueprint(fhir_blueprint())
    app.register_blueprint(render_bp)
    return app
