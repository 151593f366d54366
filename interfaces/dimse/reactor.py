"""Adaptive polling for pynetdicom's reactors.

pynetdicom's association and DUL threads poll: each loop sleeps 1 ms, so every request/response
turn of a C-STORE waits ~1-2 ms doing nothing (a 300-slice series loses ~0.5 s). While an
association has received data in the last half second we poll every 0.2 ms instead; an idle one
keeps pynetdicom's 1 ms and costs no more CPU than before. Only those 1 ms reactor sleeps change.
"""

from __future__ import annotations

import threading
import time as _time
from typing import Any

import pynetdicom.association as _association_module
import pynetdicom.dul as _dul_module
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

REACTOR_SLEEP = 0.001  # pynetdicom's loop delay (Association._run_reactor, DUL._run_loop_delay)
BUSY_SLEEP = 0.0002
BUSY_WINDOW = 0.5  # seconds since the association last received data


def _last_receive(thread: threading.Thread) -> float | None:
    if isinstance(thread, DULServiceProvider):
        dul: Any = thread
    elif isinstance(thread, Association):
        dul = getattr(thread, "dul", None)
    else:
        return None
    timer = getattr(dul, "_idle_timer", None)
    return getattr(timer, "_start_time", None)  # restarted by every received PDU


class _AdaptiveTime:
    """Stands in for the ``time`` module inside pynetdicom's association and dul modules."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds == REACTOR_SLEEP:
            last = _last_receive(threading.current_thread())
            if last is not None and _time.time() - last < BUSY_WINDOW:
                seconds = BUSY_SLEEP
        _time.sleep(seconds)


def install() -> None:
    """Idempotent; called when the hub's AE is built."""
    shim = _AdaptiveTime()
    _association_module.time = shim  # type: ignore[assignment]
    _dul_module.time = shim  # type: ignore[assignment]
