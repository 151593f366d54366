"""The :class:`hub.app.Hub` of the running Flask application (put there by ``create_app``)."""

from __future__ import annotations

from flask import current_app

from hub.app import Hub


def hub() -> Hub:
    return current_app.extensions["rishub"]
