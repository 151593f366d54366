"""File blob store: ``blobs/ab/cd/<key>`` under the data dir, bytes exactly as received.

Write protocol (crash-safe without scanning the archive):

1. :meth:`BlobStore.stage` streams the bytes to ``tmp/<session>/<key>.part``, fsyncs, renames it
   to ``tmp/<session>/<key>`` and fsyncs the directory.
2. The caller commits the index row that names ``<key>``.
3. :meth:`BlobStore.publish` renames the staged file to its sharded place and fsyncs the directory.

Each process stages into its own session directory, held with an ``flock``. On start-up,
:meth:`BlobStore.recover` visits only session directories whose owner is gone: a staged file whose
key the index knows is published (roll forward), any other is deleted (roll back).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class StagedBlob:
    key: str
    path: Path
    size: int


class BlobStore:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_root = self.root / "tmp"
        self.fsync = fsync
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_root.mkdir(parents=True, exist_ok=True)
        # Create the session directory already locked (under a dot-name, then renamed), so that a
        # concurrent recovery never sees it unlocked.
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        building = self.tmp_root / f".{name}"
        building.mkdir()
        self._lock_fd = os.open(building / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.session_dir = self.tmp_root / name
        os.rename(building, self.session_dir)
        self._sync_dir(self.tmp_root)

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        return self.blob_dir / key[0:2] / key[2:4] / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        """Open a published blob. A row committed a moment ago may still be mid-publish."""
        path = self.path(key)
        for _ in range(50):
            try:
                return open(path, "rb")  # noqa: SIM115 - caller closes
            except FileNotFoundError:
                time.sleep(0.01)
        return open(path, "rb")  # noqa: SIM115

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    # ------------------------------------------------------------------ writing
    def stage(self, source: bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO) -> StagedBlob:
        """Copy ``source`` (bytes, a path, or a readable binary stream) into a durable staged file."""
        key = uuid.uuid4().hex
        part = self.session_dir / f"{key}.part"
        final = self.session_dir / key
        size = 0
        try:
            with open(part, "wb") as out:
                if isinstance(source, (bytes, bytearray, memoryview)):
                    out.write(source)
                    size = len(source)
                elif isinstance(source, (str, os.PathLike)):
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
                    size = out.tell()
                else:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
                    size = out.tell()
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            os.rename(part, final)
            self._sync_dir(self.session_dir)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise
        return StagedBlob(key, final, size)

    def publish(self, staged: StagedBlob) -> Path:
        """Move a staged blob whose index row is committed to its final place."""
        dest = self.path(staged.key)
        try:
            os.rename(staged.path, dest)
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staged.path, dest)
            self._sync_dir(dest.parent.parent)
        self._sync_dir(dest.parent)
        return dest

    def discard(self, staged: StagedBlob) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self.path(key).unlink()

    # ------------------------------------------------------------------ recovery
    def recover(self, known_keys: Callable[[list[str]], set[str]]) -> tuple[int, int]:
        """Finish or undo what dead processes left staged; returns (published, deleted)."""
        published = deleted = 0
        for session in self.tmp_root.iterdir():
            if session == self.session_dir or not session.is_dir() or session.name.startswith("."):
                continue
            lock = session / ".lock"
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                fd = None
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # its owner is alive
            try:
                staged = [p for p in session.iterdir() if p.name != ".lock"]
                complete = [p for p in staged if not p.name.endswith(".part")]
                keep = known_keys([p.name for p in complete]) if complete else set()
                for p in staged:
                    if p.name in keep:
                        self.publish(StagedBlob(p.name, p, p.stat().st_size))
                        published += 1
                    else:
                        p.unlink()
                        deleted += 1
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                session.rmdir()
            finally:
                if fd is not None:
                    os.close(fd)
        self._sync_dir(self.tmp_root)
        return published, deleted

    def iter_keys(self) -> Iterable[str]:
        """Every published blob key (for consistency checks; walks the whole store)."""
        for path in self.blob_dir.glob("*/*/*"):
            if path.is_file():
                yield path.name

    def close(self) -> None:
        """Release the session; an empty session directory is removed."""
        try:
            leftovers = [p for p in self.session_dir.iterdir() if p.name != ".lock"]
            if not leftovers:
                (self.session_dir / ".lock").unlink(missing_ok=True)
                self.session_dir.rmdir()
        except FileNotFoundError:
            pass
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def _sync_dir(self, path: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
