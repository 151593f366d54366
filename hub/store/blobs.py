"""File blob store: ``blobs/<shard>/<shard>/<key>`` under the data dir, bytes exactly as received.

Write protocol (crash-safe without scanning the archive):

1. :meth:`BlobStore.stage` puts the bytes in ``tmp/<session>/<key>`` (hard-linking a file that the
   caller hands over, else copying) and fsyncs it.
2. The caller commits the index row that names ``<key>``.
3. :meth:`BlobStore.publish` renames the staged file to its sharded place and fsyncs that directory.

Each process stages into its own session directory, held with an ``flock``. On start-up,
:meth:`BlobStore.recover` visits only session directories whose owner is gone: a staged file whose
key the index knows was complete before its row committed, so it is published (roll forward); any
other is deleted (roll back).

Keys start with the time in milliseconds, so a series received together lands in one or two shard
directories (a new one about every minute) instead of creating a directory per file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key() -> str:
    """32 hex digits: 12 of milliseconds since the epoch, then 20 random."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


@dataclass(frozen=True)
class StagedBlob:
    key: str
    path: Path
    size: int
    syncing: Future[None] | None = None  # fsync running in the background (stage(..., background_sync))


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
        self._syncer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-fsync")
        self._sync_dir(self.tmp_root)

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        return self.blob_dir / key[0:5] / key[5:8] / key

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
    def stage(
        self,
        source: bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO,
        *,
        consume: bool = False,
        background_sync: bool = False,
    ) -> StagedBlob:
        """Put ``source`` (bytes, a path, or a readable binary stream) in a staged file.

        With ``consume`` the caller gives up the file at path ``source`` (a receive buffer): it is
        hard-linked when on the same file system instead of copied. The file is durable when this
        returns, or, with ``background_sync``, once :meth:`wait_durable` returns: the fsync then
        runs while the caller parses and indexes.
        """
        key = new_key()
        final = self.session_dir / key
        try:
            if consume and isinstance(source, (str, os.PathLike)) and self._link(source, final):
                return self._synced(StagedBlob(key, final, final.stat().st_size), background_sync)
            with open(final, "wb") as out:
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
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                final.unlink()
            raise
        return self._synced(StagedBlob(key, final, size), background_sync)

    def _synced(self, staged: StagedBlob, background: bool) -> StagedBlob:
        if not self.fsync:
            return staged
        if background:
            return StagedBlob(staged.key, staged.path, staged.size, self._syncer.submit(_fsync_file, staged.path))
        _fsync_file(staged.path)
        return staged

    def wait_durable(self, staged: StagedBlob) -> None:
        """Block until a background fsync of ``staged`` has finished (re-raising its error)."""
        if staged.syncing is not None:
            staged.syncing.result()

    @staticmethod
    def _link(source: str | os.PathLike[str], dest: Path) -> bool:
        try:
            os.link(source, dest)
            return True
        except OSError:  # other file system, or links not allowed: copy instead
            return False

    def publish(self, staged: StagedBlob) -> Path | None:
        """Move a staged blob whose index row is committed to its final place; None when a later
        transaction released it first (see :meth:`delete`)."""
        moved = self._move(staged)
        if moved is None:
            return None
        dest, created = moved
        for d in created:
            self._sync_dir(d)
        self._sync_dir(dest.parent)
        return dest

    def publish_many(self, staged: list[StagedBlob]) -> None:
        """:meth:`publish` for a batch: each directory is fsynced once for all the batch's blobs."""
        dirs: set[Path] = set()
        for s in staged:
            moved = self._move(s)
            if moved is None:
                continue
            dest, created = moved
            dirs.update(created)
            dirs.add(dest.parent)
        for d in sorted(dirs, key=lambda p: len(p.parts)):  # parents before their children
            self._sync_dir(d)

    def _move(self, staged: StagedBlob) -> tuple[Path, list[Path]] | None:
        """Rename into place; returns the destination and the directories whose entries changed
        by creating a shard directory (to be fsynced), or None when the staged file is gone because
        a later transaction released this blob before it was published (:meth:`delete`)."""
        dest = self.path(staged.key)
        created: list[Path] = []
        try:
            os.rename(staged.path, dest)
        except FileNotFoundError:
            if not os.path.lexists(staged.path):
                return None
            if not dest.parent.parent.is_dir():
                dest.parent.parent.mkdir(exist_ok=True)
                created.append(self.blob_dir)
            dest.parent.mkdir(exist_ok=True)
            created.append(dest.parent.parent)
            try:
                os.rename(staged.path, dest)
            except FileNotFoundError:
                if os.path.lexists(staged.path):
                    raise
                return None
        return dest, created

    def discard(self, staged: StagedBlob) -> None:
        if staged.syncing is not None:
            with contextlib.suppress(OSError):
                staged.syncing.result()
        with contextlib.suppress(FileNotFoundError):
            staged.path.unlink()

    def delete(self, keys: Iterable[str]) -> None:
        """Delete released blobs. A blob can be released (overwritten, deleted) by a transaction that
        starts right after the one that wrote it commits, before that one has published it: it is then
        still staged in this process's session. The staged file goes first, then the published one; the
        publisher's atomic rename has either already happened (the second unlink removes it) or finds
        nothing and skips it, so no file outlives its last index row."""
        for key in keys:
            for path in (self.session_dir / key, self.path(key)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

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
                keep = known_keys([p.name for p in staged]) if staged else set()
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
        self._syncer.shutdown(wait=True)
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
