"""Thin protocol adapters: parse the wire, call a hub service, format the wire."""
