"""RemoteService without a network: name resolution, level/key validation, instance look-ups, and
the C-STORE batching of presentation contexts (PS3.8 9.3.2.2: at most 128 per association)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from hub.services.remote import (
    EchoResult,
    MoveResult,
    OutgoingFile,
    RemoteService,
    StoreReport,
    normalize_keys,
    normalize_level,
)
from hub.settings import Modality, load
from hub.store.lookup import StoredFile
from interfaces.dimse.scu_store import MAX_CONTEXTS, Probe, batches


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def echo(self, modality: Modality) -> EchoResult:
        self.calls.append(("echo", modality.name))
        return EchoResult(modality.name, 0, 0.0)

    def find(self, modality: Modality, level: str, keys: dict[str, str], root: str = "study") -> list[dict[str, str]]:
        self.calls.append(("find", level, keys, root))
        return []

    def move(self, modality: Modality, level: str, keys: dict[str, str], destination_aet: str,
             root: str = "study") -> MoveResult:
        self.calls.append(("move", level, keys, destination_aet, root))
        return MoveResult(0)

    def store(self, modality: Modality, files: Sequence[OutgoingFile]) -> StoreReport:
        self.calls.append(("store", list(files)))
        return StoreReport()


class FakeLookup:
    def __init__(self, *files: StoredFile) -> None:
        self.files = files

    def instance_files(self, refs: Iterable[str]) -> dict[str, StoredFile]:
        out = {}
        for ref in refs:
            for f in self.files:
                if ref in (f.public_id, f.sop_instance_uid):
                    out[ref] = f
        return out


@pytest.fixture
def service() -> tuple[RemoteService, FakeClient]:
    settings = load(environ={"RISHUB_MODALITIES": '{"PACS": {"aet": "PACS", "host": "127.0.0.1", "port": 11112}}'})
    client = FakeClient()
    stored = StoredFile("id-1", "1.2.3", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "abc")
    svc = RemoteService(ModalityDirectory(settings), client, FakeLookup(stored), lambda key: Path("/blobs") / key)
    return svc, client


def test_unknown_modality_is_unknown_resource(service) -> None:
    svc, client = service
    with pytest.raises(HubError) as info:
        svc.echo("NOPE")
    assert info.value.code == "unknown_resource" and info.value.http_status == 404
    assert svc.echo("PACS").ok and client.calls == [("echo", "PACS")]


def test_keys_accept_keywords_and_tags() -> None:
    assert normalize_keys({"PatientID": "X", "0008,0020": "2024-", "(0020,000D)": "", "00100010": ""}) == {
        "PatientID": "X", "StudyDate": "2024-", "StudyInstanceUID": "", "PatientName": ""}
    for bad in ({"NoSuchThing": ""}, {"QueryRetrieveLevel": "STUDY"}, {"ReferencedSeriesSequence": "x"}):
        with pytest.raises(HubError) as info:
            normalize_keys(bad)
        assert info.value.code == "bad_request"


def test_levels_and_models() -> None:
    assert normalize_level("study", None) == ("STUDY", "study")
    assert normalize_level("PATIENT", None) == ("PATIENT", "patient")
    assert normalize_level("instance", "patient") == ("IMAGE", "patient")
    for level, root in (("FRAME", None), ("PATIENT", "study"), ("STUDY", "worklist")):
        with pytest.raises(HubError):
            normalize_level(level, root)


def test_move_needs_the_unique_key_and_a_destination(service) -> None:
    svc, client = service
    with pytest.raises(HubError, match="needs SeriesInstanceUID"):
        svc.move("PACS", "SERIES", {"StudyInstanceUID": "1.2"}, "DEST")
    with pytest.raises(HubError, match="destination AE title"):
        svc.move("PACS", "STUDY", {"StudyInstanceUID": "1.2"}, "X" * 17)
    assert svc.move("PACS", "STUDY", {"StudyInstanceUID": "1.2"}, " DEST ").ok
    assert client.calls[-1] == ("move", "STUDY", {"StudyInstanceUID": "1.2"}, "DEST", "study")


def test_store_resolves_instances_and_walks_folders(service, tmp_path: Path) -> None:
    svc, client = service
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "2.dcm").write_bytes(b"x")
    (tmp_path / "a" / "1.dcm").write_bytes(b"x")
    svc.store("PACS", [tmp_path / "a"], ["1.2.3"])
    files = client.calls[-1][1]
    assert [f.path for f in files] == [tmp_path / "a" / "1.dcm", tmp_path / "a" / "b" / "2.dcm", Path("/blobs/abc")]
    assert files[-1].label == "1.2.3" and files[-1].sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    for paths, refs, code in (([], ["nope"], "unknown_resource"), ([tmp_path / "missing"], [], "bad_request"),
                              ([], [], "bad_request")):
        with pytest.raises(HubError) as info:
            svc.store("PACS", paths, refs)
        assert info.value.code == code


def test_batches_keep_each_association_within_128_contexts() -> None:
    def probe(i: int, sop: str, ts: str) -> Probe:
        return Probe(OutgoingFile(Path(f"{i}"), f"{i}"), sop, f"1.2.{i}", ts, True, 10, i)

    # 100 SOP classes in JPEG 2000: 3 contexts each (J2K, explicit LE, implicit LE)
    probes = [probe(i, f"1.2.840.99.{i}", "1.2.840.10008.1.2.4.91") for i in range(100)]
    probes += [probe(100 + i, "1.2.840.99.0", "1.2.840.10008.1.2.1") for i in range(50)]  # no new contexts
    out = list(batches(probes))
    assert [len(b) for b, _ in out] == [42, 42, 16 + 50]
    assert all(len(pairs) <= MAX_CONTEXTS for _, pairs in out)
    assert [p.index for b, _ in out for p in b] == list(range(150))


# --------------------------------------------------------------------------- archived resources, chunked C-STORE


class FakeResources:
    def __init__(self, tree: dict[str, tuple[str, list[str]]]) -> None:
        self.tree = tree

    def resolve(self, public_id: str) -> tuple[str, list[str]] | None:
        return self.tree.get(public_id)


def test_store_instances_in_chunks_with_progress_and_stop() -> None:
    settings = load(environ={"RISHUB_MODALITIES": '{"PACS": {"aet": "PACS", "host": "127.0.0.1", "port": 11112}}'})
    stored = [StoredFile(f"id-{i}", f"1.2.{i}", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", f"k{i}")
              for i in range(5)]
    client = FakeClient()
    svc = RemoteService(ModalityDirectory(settings), client, FakeLookup(*stored), lambda key: Path("/b") / key,
                        FakeResources({"study-1": ("Study", [f"id-{i}" for i in range(5)])}))
    [(public_id, level, ids)] = svc.resolve_resources([" study-1 "])
    assert (public_id, level) == ("study-1", "Study") and len(ids) == 5
    with pytest.raises(HubError) as info:
        svc.resolve_resources(["study-1", "nope"])
    assert info.value.code == "unknown_resource"

    seen: list[tuple[int, int]] = []
    svc.store_instances("PACS", ids, chunk=2, progress=lambda done, total: seen.append((done, total)))
    assert [len(c[1]) for c in client.calls] == [2, 2, 1] and seen == [(2, 5), (4, 5), (5, 5)]
    assert [f.label for c in client.calls for f in c[1]] == ids

    client.calls.clear()
    checks = []

    def check() -> None:
        checks.append(1)
        if len(checks) == 2:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        svc.store_instances("PACS", ids, chunk=2, check=check)
    assert len(client.calls) == 1, "stopped before the second chunk"
    assert len(svc.store_instances("PACS", ids).items) == 0 and len(client.calls) == 2  # default: one chunk


# --------------------------------------------------------------------------- the registry


def test_registry_merges_settings_and_run_time_declarations(db_url: str) -> None:
    from hub.services.modalities import RemoteModality
    from hub.store.db import Database, upgrade
    from hub.store.modalities import ModalityRepository

    upgrade(db_url)
    db = Database(db_url)
    try:
        settings = load(environ={"RISHUB_MODALITIES": '{"CONF": {"aet": "CONFAE", "host": "127.0.0.1"}}'})
        directory = ModalityDirectory(settings, ModalityRepository(db))
        other = ModalityDirectory(settings, ModalityRepository(db), refresh_seconds=0)  # another process
        assert list(directory.modalities) == ["CONF"] and directory.get("CONF").manufacturer == "Generic"
        directory.put(RemoteModality("NEW", "NEWAE", "10.0.0.1", 104, allow_store=False, timeout=3))
        directory.put(RemoteModality("CONF", "CONFAE", "127.0.0.1", 11112))  # overrides the settings entry
        assert list(directory.modalities) == ["CONF", "NEW"]
        assert directory.require("CONF").port == 11112 and directory.by_aet("NEWAE")[0].timeout == 3
        assert list(other.modalities) == ["CONF", "NEW"]
        directory.remove("CONF")
        directory.remove("NEW")
        assert directory.modalities == {} and other.modalities == {}
        with pytest.raises(HubError) as info:
            directory.remove("CONF")
        assert info.value.code == "unknown_resource"
        rows = ModalityRepository(db).rows()
        assert [(r["name"], r["removed"]) for r in rows] == [("CONF", True)], "a settings entry leaves a tombstone"
        directory.put(RemoteModality("CONF", "CONFAE", "127.0.0.1", 104))
        assert list(ModalityDirectory(settings, ModalityRepository(db)).modalities) == ["CONF"]
        for bad in (RemoteModality("X", "", "h", 1), RemoteModality("X", "A" * 17, "h", 1),
                    RemoteModality("X", "AE", "h", 0), RemoteModality("X", "AE", " ", 1),
                    RemoteModality("X", "AE", "h", 1, manufacturer="Nope"), RemoteModality("a/b", "AE", "h", 1)):
            with pytest.raises(HubError) as info:
                directory.put(bad)
            assert info.value.code == "bad_request"
        with pytest.raises(HubError):
            ModalityDirectory(settings).put(RemoteModality("X", "AE", "h", 1))  # no database: read-only
    finally:
        db.dispose()
