"""Cross-origin access for browser viewers (Fetch Standard, CORS protocol): the origins listed in
``[http] cors_origins`` may call the API with credentials; preflight requests are answered before
authentication (a browser never sends credentials on them)."""

from __future__ import annotations

from flask import Flask, Response, request

ALLOW_HEADERS = "Authorization, Content-Type, Accept, Accept-Encoding, Range, If-None-Match, X-Requested-With"
EXPOSE_HEADERS = "Content-Length, Content-Type, Content-Range, ETag, Last-Modified, Warning, Location"


def allowed_origin(configured: str, origin: str | None) -> str | None:
    if not origin or not configured.strip():
        return None
    origins = {o.strip().rstrip("/") for o in configured.split(",") if o.strip()}
    if "*" in origins or origin.rstrip("/") in origins:
        return origin
    return None


def install(app: Flask, configured: str) -> None:
    if not configured.strip():
        return

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        origin = allowed_origin(configured, request.headers.get("Origin"))
        if origin is None:
            return None  # not ours to allow: authentication answers it
        resp = Response(status=204)
        resp.headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = request.headers.get("Access-Control-Request-Headers",
                                                                           ALLOW_HEADERS)
        resp.headers["Access-Control-Max-Age"] = "600"
        return resp

    @app.after_request
    def _headers(resp: Response) -> Response:
        origin = allowed_origin(configured, request.headers.get("Origin"))
        if origin is not None:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Access-Control-Allow-Credentials"] = "true"
            resp.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            resp.headers.add("Vary", "Origin")
        return resp
