"""The render service while volumes load (hub.services.render): the first axial image comes before the
volume is complete, a load cancelled under a waiting request (the series changed) is started again, and
images that depend on what is decoded so far are marked as not final. The reader is the real one, slowed
down so that the loading states last long enough to observe."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hub.services.render as render_module
from hub.domain import Origin
from hub.services.render import RenderRequest
from tests.render_phantom import write_phantom_series
from tests.synthetic import uid

SHAPE = (48, 40, 48)
SPACING = (1.0, 1.0, 2.0)


@pytest.fixture
def slow_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    real = render_module.frame_reader

    def slow(plan: Any, paths: Any) -> Any:
        read = real(plan, paths)

        def reader(k: int) -> np.ndarray:
            time.sleep(0.02)
            return read(k)

        return reader

    monkeypatch.setattr(render_module, "frame_reader", slow)


@pytest.fixture
def series(hub: Any, tmp_path: Path) -> str:
    for path in write_phantom_series(tmp_path / "phantom", SHAPE, SPACING):
        hub.ingest.store(Origin("import", user="test"), path)
    return uid("render-phantom", "series")  # the render API also takes the Series Instance UID


def test_the_first_axial_image_comes_before_the_volume_is_complete(hub: Any, series: str, slow_reader: None) -> None:
    started = time.perf_counter()
    rendered = hub.render.image(series, RenderRequest(view="axial", position=50.0 + 20 * SPACING[2]))
    data, view, final = rendered.data, rendered.view, rendered.final
    elapsed = time.perf_counter() - started
    info = hub.render.info(series)
    assert data[:2] == b"\xff\xd8" and view.labels.left == "R"
    assert not info["Complete"] and info["Loaded"] < 0.5, (elapsed, info["Loaded"])
    assert final  # the series has its own window: the image will not change when the rest arrives
    assert elapsed < 48 * 0.02  # well before the whole series could have been read


def test_a_load_cancelled_under_a_waiting_request_is_started_again(hub: Any, series: str, tmp_path: Path,
                                                                   slow_reader: None) -> None:
    results: list[Any] = []

    def sagittal() -> None:
        try:
            results.append(hub.render.image(series, RenderRequest(view="sagittal")))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    waiting = threading.Thread(target=sagittal)
    waiting.start()
    time.sleep(0.2)  # the sagittal request waits for every slice
    extra = write_phantom_series(tmp_path / "extra", (SHAPE[0] + 1, *SHAPE[1:]), SPACING, shuffle=False)[-1]
    hub.ingest.store(Origin("import", user="test"), extra)  # a new stamp: the old load is cancelled
    assert hub.render.info(series)["Dimensions"][2] == SHAPE[0] + 1
    waiting.join(30)
    (result,) = results
    assert not isinstance(result, Exception), result
    assert result.data[:2] == b"\xff\xd8" and result.final
