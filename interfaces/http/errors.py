"""HTTP errors in Orthanc's JSON shape (``HttpError``, ``HttpStatus``, ``Message``, ...), from the
hub's single error table; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from hub.errors import HubError

log = logging.getLogger(__name__)

# Orthanc ErrorCode values for the few we emit (OrthancFramework Enumerations.h).
ORTHANC_STATUS = {
    400: (8, "Bad request"),
    401: (29, "Unauthorized"),
    403: (29, "Unauthorized"),
    404: (17, "Unknown resource"),
    405: (3, "Parameter out of range"),
    406: (8, "Bad request"),
    409: (35, "Database error"),
    415: (16, "Bad file format"),
    500: (-1, "Internal error"),
    502: (9, "Error in the network protocol"),
    507: (14, "Full storage"),
}


def error_response(status: int, message: str) -> Response:
    orthanc_status, orthanc_error = ORTHANC_STATUS.get(status, (-1, "Internal error"))
    body = {
        "HttpError": _reason(status),
        "HttpStatus": status,
        "Message": message,
        "Method": request.method,
        "OrthancError": orthanc_error,
        "OrthancStatus": orthanc_status,
        "Uri": request.path,
    }
    resp = jsonify(body)
    resp.status_code = status
    return resp


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install(app: Flask) -> None:
    @app.errorhandler(HubError)
    def _hub_error(exc: HubError) -> Response:
        log.info("%s %s -> %d %s", request.method, request.path, exc.http_status, exc.code)
        return error_response(exc.http_status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return error_response(exc.code or 500, exc.description or _reason(exc.code or 500))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal error")
