"""Blob store: staged durably, published by rename, recovered per dead session."""

import os
import subprocess
import sys
from pathlib import Path

from hub.store.blobs import BlobStore


def test_stage_publish_keeps_bytes(tmp_path: Path):
    store = BlobStore(tmp_path)
    payload = os.urandom(3 * 1024 * 1024 + 7)
    staged = store.stage(payload)
    assert staged.size == len(payload)
    final = store.publish(staged)
    assert final == store.path(staged.key)
    assert final.read_bytes() == payload
    assert final.parent.parent.parent == store.blob_dir  # blobs/ab/cd/key
    store.close()
    assert list(store.tmp_root.iterdir()) == []


def test_stage_from_path_and_stream(tmp_path: Path):
    store = BlobStore(tmp_path / "s")
    src = tmp_path / "f.bin"
    src.write_bytes(b"abc" * 1000)
    assert store.stage(src).path.read_bytes() == src.read_bytes()
    with open(src, "rb") as f:
        assert store.stage(f).size == 3000


def test_a_blob_released_before_its_publication_leaves_no_file(tmp_path: Path):
    """Overwrite race (PostgreSQL READ COMMITTED): T1 commits the row naming K1, T2 overwrites that row at
    once and deletes K1 before T1 has renamed K1 into place. T1's publication then finds nothing to move
    and skips it, instead of leaving a file no row refers to (or failing the store)."""
    store = BlobStore(tmp_path)
    released, kept = store.stage(b"first copy"), store.stage(b"second copy")
    store.delete([released.key])  # T2, between T1's COMMIT and T1's publish
    assert not released.path.exists()
    store.publish_many([released, kept])  # T1 publishes its batch
    assert store.publish(store.stage(b"x")) is not None
    assert not store.path(released.key).exists() and store.path(kept.key).read_bytes() == b"second copy"
    late = store.stage(b"late")
    store.delete([late.key])
    assert store.publish(late) is None
    assert released.key not in set(store.iter_keys()) and late.key not in set(store.iter_keys())


def test_delete_after_publication_removes_the_published_file(tmp_path: Path):
    store = BlobStore(tmp_path)
    staged = store.stage(b"abc")
    store.publish(staged)
    store.delete([staged.key, "0" * 32])  # an unknown key is no error
    assert not store.path(staged.key).exists()


def test_recover_rolls_forward_known_and_back_unknown(tmp_path: Path):
    # A child process stages two blobs and dies without cleaning up (its flock is released).
    code = (
        "import os, sys; from hub.store.blobs import BlobStore;"
        f"s = BlobStore(__import__('pathlib').Path({str(tmp_path)!r}));"
        "a = s.stage(b'known'); b = s.stage(b'unknown');"
        "(s.session_dir / 'c.part').write_bytes(b'half');"
        "print(a.key, b.key); sys.stdout.flush(); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    known, unknown = out.stdout.split()
    store = BlobStore(tmp_path)
    published, deleted = store.recover(lambda keys: {k for k in keys if k == known})
    assert (published, deleted) == (1, 2)
    assert store.path(known).read_bytes() == b"known"
    assert not store.exists(unknown)
    assert [p for p in store.tmp_root.iterdir() if p != store.session_dir] == []


def test_recover_leaves_live_sessions_alone(tmp_path: Path):
    live = BlobStore(tmp_path)
    staged = live.stage(b"in flight")
    other = BlobStore(tmp_path)
    assert other.recover(lambda keys: set()) == (0, 0)
    assert staged.path.exists()
