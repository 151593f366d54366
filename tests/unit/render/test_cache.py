"""The volume cache and the background loader: LRU by bytes, change stamps, one shared load per key,
volumes over the bound, a requested slice served before the volume is complete, decoding failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from hub.render.assemble import Loader, NotAVolume, VolumePlan, frame_reader, new_volume, plan_volume
from hub.render.cache import VolumeCache
from hub.render.volume import Volume
from tests.render_phantom import phantom_data, write_phantom_series

SHAPE = (24, 32, 40)


def small_plan(nz: int = 8, size: int = 16) -> VolumePlan:
    metas = []
    for k in range(nz):
        ds = Dataset()
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation = 1, 16, 12, 0
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 2.0 * k]
        ds.PixelSpacing, ds.RescaleSlope, ds.RescaleIntercept = [1, 1], 1, -1024
        metas.append(ds.to_json_dict())
    return plan_volume(metas)


def reader_of(plan: VolumePlan, delay: float = 0.0, fail_at: int | None = None,
              log: list[int] | None = None) -> Callable[[int], np.ndarray]:
    """Slice k is filled with 1024 + k (so modality value k); optionally slow, or failing at one slice."""
    def read(k: int) -> np.ndarray:
        time.sleep(delay)
        if k == fail_at:
            raise OSError(f"cannot read slice {k}")
        if log is not None:
            log.append(k)
        return np.full(plan.shape[1:], 1024 + k, np.uint16)
    return read


def starter(plan: VolumePlan, counter: list[int] | None = None, **reader: object
            ) -> Callable[[], tuple[Volume, Loader]]:
    def start() -> tuple[Volume, Loader]:
        if counter is not None:
            counter.append(1)
            time.sleep(0.05)  # a slow start makes concurrent callers overlap
        volume = new_volume(plan)
        return volume, Loader(volume, plan, reader_of(plan, **reader))  # type: ignore[arg-type]
    return start


def test_lru_eviction_by_bytes() -> None:
    plan = small_plan()
    size = plan.nbytes
    cache = VolumeCache(max_bytes=2 * size + size // 2)
    a = cache.get_or_start(("A", 1), starter(plan))
    cache.get_or_start(("B", 1), starter(plan))
    assert cache.get(("A", 1)) is a  # A is now the most recently used
    cache.get_or_start(("C", 1), starter(plan))
    assert cache.get(("B", 1)) is None and cache.get(("A", 1)) is a and cache.get(("C", 1)) is not None
    stats = cache.stats()
    assert stats["entries"] == 2 and stats["bytes"] == 2 * size
    assert stats["misses"] == 3 + 1 and stats["hits"] == 3  # three loads started, one get of the evicted B
    assert a.loader.join(5) and a.volume.complete
    assert a.volume.data[:, 0, 0].tolist() == list(range(plan.shape[0]))


def test_a_new_stamp_replaces_the_old_volume() -> None:
    plan = small_plan(nz=40)
    cache = VolumeCache(max_bytes=10 * plan.nbytes)
    old = cache.get_or_start(("S", "t1"), starter(plan, delay=0.02))
    new = cache.get_or_start(("S", "t2"), starter(plan))
    assert new.volume is not old.volume
    assert cache.get(("S", "t1")) is None and cache.get(("S", "t2")) is new
    assert old.loader.join(5) and old.volume.error == "cancelled" and not old.volume.complete
    assert cache.stats()["entries"] == 1 and cache.stats()["bytes"] == plan.nbytes


def test_concurrent_requests_share_one_load() -> None:
    plan = small_plan()
    cache = VolumeCache(max_bytes=10 * plan.nbytes)
    starts: list[int] = []
    got: list[Volume] = []

    def request() -> None:
        got.append(cache.get_or_start(("S", 1), starter(plan, starts)).volume)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(starts) == 1 and len(got) == 8 and all(v is got[0] for v in got)
    assert cache.stats()["misses"] == 1 and cache.stats()["hits"] == 7


def test_start_error_reaches_every_caller_and_nothing_is_kept() -> None:
    cache = VolumeCache(max_bytes=1 << 20)
    errors: list[str] = []

    def start() -> tuple[Volume, Loader]:
        time.sleep(0.05)
        raise NotAVolume("single-image", "the series has a single image")

    def request() -> None:
        try:
            cache.get_or_start(("S", 1), start)
        except NotAVolume as exc:
            errors.append(exc.reason)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert errors == ["single-image"] * 4
    assert cache.stats()["entries"] == 0 and cache.get(("S", 1)) is None


def test_a_volume_over_the_bound_is_served_but_not_kept() -> None:
    plan = small_plan(nz=20)
    cache = VolumeCache(max_bytes=plan.nbytes // 2)
    first = cache.get_or_start(("BIG", 1), starter(plan, delay=0.01))
    assert cache.get(("BIG", 1)) is first  # shared while it loads
    assert first.loader.join(5) and first.volume.complete
    assert cache.get(("BIG", 1)) is None
    assert cache.stats()["bytes"] == 0 and cache.stats()["entries"] == 0
    again = cache.get_or_start(("BIG", 1), starter(plan))
    assert again.volume is not first.volume


def test_prioritised_slice_is_served_before_the_volume_is_complete(tmp_path: Path) -> None:
    paths = write_phantom_series(tmp_path, SHAPE)
    metas = [pydicom.dcmread(p, stop_before_pixels=True).to_json_dict() for p in paths]
    plan = plan_volume(metas)
    decoded: list[int] = []
    read = frame_reader(plan, paths)

    def slow(k: int) -> np.ndarray:
        time.sleep(0.03)
        decoded.append(k)
        return read(k)

    cache = VolumeCache(max_bytes=1 << 30)

    def start() -> tuple[Volume, Loader]:
        volume = new_volume(plan)
        return volume, Loader(volume, plan, slow)

    volume, loader = cache.get_or_start(("PH", 1), start)
    wanted = SHAPE[0] - 3
    loader.prioritise(wanted)
    assert volume.wait_for(wanted, timeout=5)
    assert not volume.complete and 0 < loader.progress < 0.5
    assert wanted in decoded[:3]
    assert np.array_equal(volume.data[wanted], phantom_data(SHAPE)[wanted])
    assert cache.stats()["loading"] == 1
    assert loader.join(10) and volume.complete and np.array_equal(volume.data, phantom_data(SHAPE))
    assert cache.stats()["loading"] == 0


def test_two_workers_and_a_later_request_first() -> None:
    plan = small_plan(nz=30)
    log: list[int] = []
    volume = new_volume(plan)
    loader = Loader(volume, plan, reader_of(plan, delay=0.01, log=log), workers=2).start()
    loader.prioritise([25, 20])
    assert volume.wait_for(np.array([20, 25]), timeout=5)
    assert {20, 25} <= set(log[:6])
    assert loader.join(5) and volume.complete and sorted(log) == list(range(30))
    assert volume.data[:, 3, 3].tolist() == list(range(30))


def test_decoding_failure_reaches_waiters_and_the_volume_is_forgotten() -> None:
    plan = small_plan(nz=12)
    cache = VolumeCache(max_bytes=1 << 20)
    volume, loader = cache.get_or_start(("S", 1), starter(plan, delay=0.01, fail_at=5))
    assert volume.wait_for(slice(None), timeout=5)  # returns once the failure is known
    assert volume.error is not None and "slice 5" in volume.error and "OSError" in volume.error
    assert loader.join(5) and not volume.complete
    assert cache.get(("S", 1)) is None  # a failed volume is not served again
    retry = cache.get_or_start(("S", 1), starter(plan))
    assert retry.loader.join(5) and retry.volume.complete


def test_drop_cancels_a_load() -> None:
    plan = small_plan(nz=50)
    cache = VolumeCache(max_bytes=1 << 20)
    volume, loader = cache.get_or_start(("S", 1), starter(plan, delay=0.01))
    cache.drop("S")
    assert loader.join(5) and volume.error == "cancelled"
    assert cache.get(("S", 1)) is None and cache.stats()["bytes"] == 0


@pytest.mark.parametrize("order", [None, [5, 4, 3]])
def test_load_order(order: list[int] | None) -> None:
    plan = small_plan(nz=6)
    log: list[int] = []
    volume = new_volume(plan)
    Loader(volume, plan, reader_of(plan, log=log), order).run()
    assert log == (order or []) + [k for k in range(6) if k not in (order or [])]
    assert volume.complete


def test_an_evicted_volume_still_loading_stops_decoding() -> None:
    """Eviction cancels the load: an evicted volume must not keep filling memory the cache no longer counts."""
    plan = small_plan(nz=40)
    cache = VolumeCache(max_bytes=plan.nbytes + plan.nbytes // 2)
    a = cache.get_or_start(("A", 1), starter(plan, delay=0.02))
    cache.get_or_start(("B", 1), starter(plan))
    assert cache.get(("A", 1)) is None
    a.loader.join(5)
    assert a.volume.error == "cancelled" and not a.volume.complete
    decoded = int(a.volume.ready.sum())
    time.sleep(0.1)
    assert int(a.volume.ready.sum()) == decoded


def test_value_range_comes_from_the_decoded_slices_only() -> None:
    plan = small_plan(nz=8)
    volume = new_volume(plan)
    volume.data[:] = 30000  # what np.empty may hold: never read for the range
    assert volume.value_range() is None
    loader = Loader(volume, plan, reader_of(plan, delay=0.05), order=[5, 2]).start()
    assert volume.wait_for([5, 2], 5) and not volume.complete
    low, high = volume.value_range()
    assert 0 <= low <= high <= 7  # modality value k in slice k; the 30000s of undecoded slices never seen
    loader.join(5)
    assert volume.value_range() == (0.0, 7.0)
