"""Assembled volumes kept in memory, least recently used first out, bounded by bytes.

A key is ``(series id, last change stamp)``: a series that changes gets a new stamp, hence a new volume,
and the volume of its old stamp is dropped (its loading cancelled). Concurrent requests for one key share
one load; a volume larger than the bound is served while it loads but not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple

from hub.render.assemble import Loader
from hub.render.volume import Volume

Key = tuple[Hashable, Hashable]  # (series id, last change stamp)


class Cached(NamedTuple):
    volume: Volume
    loader: Loader


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Cached | None = None
        self.error: BaseException | None = None


class VolumeCache:
    """Thread-safe LRU of volumes (still loading or complete), at most ``max_bytes`` of voxel data."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[Key, Cached] = OrderedDict()
        self._oversize: dict[Key, Cached] = {}  # served while loading, never kept
        self._pending: dict[Key, _Pending] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    def get(self, key: Key) -> Cached | None:
        """The volume of ``key`` (possibly still loading), or None; a failed volume is forgotten."""
        with self._lock:
            found = self._lookup(key)
            if found is None:
                self._misses += 1
            else:
                self._hits += 1
            return found

    def get_or_start(self, key: Key, start: Callable[[], tuple[Volume, Loader]]) -> Cached:
        """The volume of ``key``; when absent ``start()`` plans it and its loader (started here), once for
        every concurrent caller. An exception of ``start`` (e.g. ``NotAVolume``) reaches them all."""
        with self._lock:
            found = self._lookup(key)
            if found is not None:
                self._hits += 1
                return found
            pending = self._pending.get(key)
            owner = pending is None
            if pending is None:
                pending = self._pending[key] = _Pending()
                self._misses += 1
            else:
                self._hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            assert pending.result is not None
            return pending.result
        try:
            volume, loader = start()
            loader.start()
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.error = exc
            pending.done.set()
            raise
        entry = Cached(volume, loader)
        with self._lock:
            del self._pending[key]
            dropped = self._insert(key, entry)
        for old in dropped:  # stale (the series changed) or evicted: stop decoding into memory no longer counted
            old.loader.cancel()
        pending.result = entry
        pending.done.set()
        return entry

    def drop(self, series: Hashable) -> None:
        """Forget every volume of ``series`` (e.g. deleted); loads still running are cancelled."""
        with self._lock:
            dropped = [self._remove(key) for key in [*self._entries, *self._oversize] if key[0] == series]
        for entry in dropped:
            entry.loader.cancel()

    def clear(self) -> None:
        """Forget every volume and cancel the loads still running (shutdown)."""
        with self._lock:
            dropped = [self._remove(key) for key in [*self._entries, *self._oversize]]
        for entry in dropped:
            entry.loader.cancel()

    def stats(self) -> dict[str, int]:
        with self._lock:
            self._prune()
            loading = sum(not e.loader.done for e in [*self._entries.values(), *self._oversize.values()])
            return {"bytes": self._bytes, "max_bytes": self.max_bytes, "entries": len(self._entries),
                    "loading": loading, "hits": self._hits, "misses": self._misses}

    def _lookup(self, key: Key) -> Cached | None:
        self._prune()
        found = self._entries.get(key) or self._oversize.get(key)
        if found is not None and found.volume.error is not None:
            self._remove(key)
            return None
        if found is not None and key in self._entries:
            self._entries.move_to_end(key)
        return found

    def _insert(self, key: Key, entry: Cached) -> list[Cached]:
        """Add ``entry``; returns the entries it pushed out (for the caller to cancel outside the lock)."""
        dropped = [self._remove(k) for k in [*self._entries, *self._oversize] if k[0] == key[0] and k != key]
        size = entry.volume.nbytes
        if size > self.max_bytes:
            self._oversize[key] = entry
            return dropped
        self._entries[key] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            dropped.append(self._remove(next(iter(self._entries))))
        return dropped

    def _remove(self, key: Key) -> Cached:
        if key in self._oversize:
            return self._oversize.pop(key)
        entry = self._entries.pop(key)
        self._bytes -= entry.volume.nbytes
        return entry

    def _prune(self) -> None:
        """Oversize volumes are shared only while they load."""
        for key in [k for k, e in self._oversize.items() if e.loader.done]:
            del self._oversize[key]
