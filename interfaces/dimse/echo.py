"""C-ECHO SCP (PS3.4 A.4, Verification Service Class)."""

from __future__ import annotations

from pynetdicom.events import Event

from hub.app import Hub


def make_echo_handler(hub: Hub, directory):  # noqa: ANN001, ANN201
    def handle_echo(event: Event) -> int:
        req = event.assoc.requestor
        if not directory.allows(req.ae_title, req.address, "echo"):
            return 0x0124  # Refused: not authorized
        return 0x0000

    return handle_echo
