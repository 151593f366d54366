"""rishub core: services and state; knows no socket, no Flask, no pynetdicom."""

__version__ = "0.1.0"
