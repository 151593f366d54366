"""HTTP adapter: ``create_app`` builds the Flask app (auth, errors, blueprints) over a Hub."""

from interfaces.http.app import create_app

__all__ = ["create_app"]
