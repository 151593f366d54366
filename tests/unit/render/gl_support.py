"""Whether the OpenGL backend's tests can run: they skip where no headless GL context can be made, but fail in
CI (``CI`` set), where ``.ci/run`` installs Mesa: a broken backend must not pass there as a skip."""

from __future__ import annotations

import os

import pytest

from hub.render import gl


def require_gl() -> None:
    """Skip (fail under CI) the calling test when no headless GL context can be made."""
    if gl.available():
        return
    reason = f"no headless GL context can be made here: {gl.unavailable_reason()}"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
