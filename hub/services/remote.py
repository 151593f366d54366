"""The hub as a DICOM SCU: C-ECHO, C-FIND, C-MOVE and C-STORE to a ``[modalities]`` entry.

The core knows no sockets: :class:`DicomClient` is the port an adapter implements (pynetdicom in
``interfaces/dimse/scu.py``); :class:`RemoteService` resolves modality names, validates the request
(query levels and keys of PS3.4 C.6, the unique keys a C-MOVE needs), turns archive instance ids into
blob files, and hands the wire work to the client. The same service serves the CLI (``rishub echo |
find | move | send``) and, later, the REST routes ``/modalities/{name}/echo|query|move|store``.

The ``allow_*`` flags of a modality govern what that node may ask *of us* (Orthanc semantics), so
they are not checked here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from hub.errors import HubError
from hub.services.modalities import ModalityDirectory
from hub.settings import Modality, Settings

if TYPE_CHECKING:
    from hub.store.lookup import StoredFile

# PS3.4 C.6.1 (Patient Root) and C.6.2 (Study Root): levels and their unique keys.
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}
ROOTS = ("patient", "study")

# PS3.7 C.3 / PS3.4 B.2.3: statuses that mean "done, with a warning".
WARNING_STATUSES = frozenset({0x0001, 0x0107, 0x0116})


def is_success(status: int | None) -> bool:
    return status == 0x0000


def is_warning(status: int | None) -> bool:
    return status is not None and (status in WARNING_STATUSES or 0xB000 <= status <= 0xBFFF)


class RemoteError(HubError):
    """The remote node could not be reached or refused the operation.

    ``kind``: ``unreachable`` (TCP connect failed), ``timeout``, ``rejected`` (A-ASSOCIATE-RJ,
    PS3.8 9.3.4), ``aborted`` (A-ABORT / connection lost), ``no_context`` (no proposed presentation
    context accepted), ``failed`` (a DIMSE failure status, PS3.7 C).
    """

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__("remote_failure", message)
        self.kind = kind
        self.status = status


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EchoResult:
    """C-ECHO (PS3.7 9.1.5, PS3.4 A.4)."""

    modality: str
    status: int
    seconds: float

    @property
    def ok(self) -> bool:
        return is_success(self.status)


@dataclass(frozen=True)
class MoveResult:
    """Final C-MOVE response (PS3.4 C.4.2.1.4, PS3.7 9.1.4): status and sub-operation counts."""

    status: int
    completed: int = 0
    failed: int = 0
    warnings: int = 0
    remaining: int = 0
    failed_sop_instance_uids: tuple[str, ...] = ()
    comment: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return is_success(self.status)


@dataclass(frozen=True)
class OutgoingFile:
    """One Part 10 file to send; UIDs and transfer syntax left empty are read from its header."""

    path: Path
    label: str  # the path or the archive's public id, as the caller named it
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax_uid: str = ""


@dataclass(frozen=True)
class StoreItem:
    """The C-STORE outcome of one file (PS3.4 B.2.3 statuses); ``status`` None: not sent."""

    label: str
    sop_instance_uid: str
    status: int | None
    transfer_syntax_uid: str = ""  # the one it went in
    unchanged: bool = False  # data set sent as stored in the file (no re-encoding)
    error: str = ""

    @property
    def ok(self) -> bool:
        return is_success(self.status) or is_warning(self.status)


@dataclass
class StoreReport:
    items: list[StoreItem] = field(default_factory=list)
    seconds: float = 0.0
    bytes: int = 0

    @property
    def sent(self) -> int:
        return sum(1 for i in self.items if i.ok)

    @property
    def failed(self) -> int:
        return sum(1 for i in self.items if not i.ok)

    @property
    def ok(self) -> bool:
        return bool(self.items) and self.failed == 0


# --------------------------------------------------------------------------- ports


class DicomClient(Protocol):
    """What the hub needs of a DICOM SCU implementation. Association-level failures raise
    :class:`RemoteError`; per-instance C-STORE failures are reported in the :class:`StoreReport`."""

    def echo(self, modality: Modality) -> EchoResult: ...

    def find(self, modality: Modality, level: str, keys: dict[str, str], root: str = "study") -> list[dict[str, str]]:
        ...

    def move(
        self, modality: Modality, level: str, keys: dict[str, str], destination_aet: str, root: str = "study"
    ) -> MoveResult: ...

    def store(self, modality: Modality, files: Sequence[OutgoingFile]) -> StoreReport: ...


class InstanceLookup(Protocol):
    def instance_files(self, refs: Iterable[str]) -> dict[str, StoredFile]: ...


class ResourceLookup(Protocol):
    def resolve(self, public_id: str) -> tuple[str, list[str]] | None: ...


def _directory(settings: Settings, db: object, registry: bool) -> ModalityDirectory:
    if db is not None:
        from hub.store.modalities import ModalityRepository

        return ModalityDirectory(settings, ModalityRepository(db))  # type: ignore[arg-type]
    if registry:
        from hub.store.db import Database
        from hub.store.modalities import ModalityRepository

        return ModalityDirectory(settings, ModalityRepository(Database(settings.effective_database_url)),
                                 strict=False)
    return ModalityDirectory(settings)


# --------------------------------------------------------------------------- keys


def normalize_keys(keys: Mapping[str, str]) -> dict[str, str]:
    """``{keyword or "GGGG,EEEE" or "GGGGEEEE": value}`` -> ``{keyword: value}`` (order kept).

    An empty value asks the remote to return the attribute (PS3.4 C.2.2.1.3 universal matching).
    """
    out: dict[str, str] = {}
    for raw, value in keys.items():
        name = raw.strip()
        keyword = _keyword(name)
        if keyword is None:
            raise HubError("bad_request", f"unknown DICOM attribute {name!r}", attribute=name)
        if keyword == "QueryRetrieveLevel":
            raise HubError("bad_request", "QueryRetrieveLevel is set from the level", attribute=keyword)
        if dictionary_VR(keyword) == "SQ" and value:
            raise HubError("bad_request", f"{keyword}: sequence keys can only be return keys", attribute=keyword)
        out[keyword] = value if value is not None else ""
    return out


def _keyword(name: str) -> str | None:
    tag_text = name.replace(",", "").replace("(", "").replace(")", "")
    if len(tag_text) == 8 and all(c in "0123456789abcdefABCDEF" for c in tag_text):
        return keyword_for_tag(int(tag_text, 16)) or None
    return name if tag_for_keyword(name) is not None else None


def normalize_level(level: str, root: str | None) -> tuple[str, str]:
    """Query/Retrieve level and information model (PS3.4 C.6): ``INSTANCE`` is accepted for
    ``IMAGE``; the model defaults to Patient Root for the PATIENT level and Study Root otherwise."""
    lvl = level.strip().upper()
    if lvl == "INSTANCE":
        lvl = "IMAGE"
    if lvl not in LEVELS:
        raise HubError("bad_request", f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    model = (root or ("patient" if lvl == "PATIENT" else "study")).strip().lower()
    if model not in ROOTS:
        raise HubError("bad_request", f"root must be patient or study, got {root!r}")
    if model == "study" and lvl == "PATIENT":
        raise HubError("bad_request", "the Study Root model has no PATIENT level (PS3.4 C.6.2)")
    return lvl, model


# --------------------------------------------------------------------------- service


class RemoteService:
    def __init__(
        self,
        directory: ModalityDirectory,
        client: DicomClient,
        lookup: InstanceLookup | None = None,
        blob_path: Callable[[str], Path] | None = None,
        resources: ResourceLookup | None = None,
    ) -> None:
        self.directory = directory
        self.client = client
        self.lookup = lookup
        self.blob_path = blob_path
        self.resources = resources

    @classmethod
    def build(
        cls,
        settings: Settings,
        client: DicomClient,
        db: object = None,
        blobs: object = None,
        *,
        directory: ModalityDirectory | None = None,
        registry: bool = False,
    ) -> RemoteService:
        """Compose from hub pieces: ``db`` (a :class:`hub.store.Database`) and ``blobs`` (a
        :class:`hub.store.BlobStore`) are only needed to send archived instances by id. The
        modalities are ``directory`` (the hub's registry); else, with ``db``, the registry in that
        database; else, with ``registry`` (the CLI), the registry of the settings' database when it
        can be read; else ``[modalities]`` only."""
        lookup = resources = None
        if db is not None:
            from hub.store.lookup import LookupRepository
            from hub.store.modalities import ResourceInstances

            lookup = LookupRepository(db)  # type: ignore[arg-type]
            resources = ResourceInstances(db)  # type: ignore[arg-type]
        if directory is None:
            directory = _directory(settings, db, registry)
        blob_path = getattr(blobs, "path", None)
        return cls(directory, client, lookup, blob_path, resources)

    def modality(self, name: str | Modality) -> Modality:
        """The modality called ``name`` (404 when unknown); a :class:`Modality` is used as given
        (a registry entry with per-call overrides of AET, host or port)."""
        if isinstance(name, Modality):
            return name
        return self.directory.require(name)

    def echo(self, name: str | Modality) -> EchoResult:
        """C-ECHO (PS3.4 A.4)."""
        return self.client.echo(self.modality(name))

    def find(
        self, name: str | Modality, level: str, keys: Mapping[str, str], root: str | None = None
    ) -> list[dict[str, str]]:
        """C-FIND (PS3.4 C.4.1): one ``{keyword: value}`` per match."""
        m = self.modality(name)
        lvl, model = normalize_level(level, root)
        return self.client.find(m, lvl, normalize_keys(keys), model)

    def move(
        self, name: str | Modality, level: str, keys: Mapping[str, str], destination_aet: str, root: str | None = None
    ) -> MoveResult:
        """C-MOVE (PS3.4 C.4.2): the remote sends the matches to ``destination_aet``. The identifier
        needs the unique key of the level (PS3.4 C.4.2.2.1)."""
        m = self.modality(name)
        lvl, model = normalize_level(level, root)
        normalized = normalize_keys(keys)
        unique = UNIQUE_KEYS[lvl]
        if not normalized.get(unique, "").strip():
            raise HubError("bad_request", f"a {lvl} level C-MOVE needs {unique}", attribute=unique)
        dest = destination_aet.strip()
        if not 1 <= len(dest) <= 16 or "\\" in dest:
            raise HubError("bad_request", f"destination AE title must have 1-16 characters, got {destination_aet!r}")
        return self.client.move(m, lvl, normalized, dest, model)

    def store(
        self, name: str | Modality, paths: Iterable[str | os.PathLike[str]] = (), instances: Iterable[str] = ()
    ) -> StoreReport:
        """C-STORE (PS3.4 B.2) files (folders recursively) and archived instances (public ids or
        SOP Instance UIDs), unchanged, over as few associations as the presentation contexts allow."""
        m = self.modality(name)
        files = self._files(paths) + self._instances(list(instances))
        if not files:
            raise HubError("bad_request", "nothing to send")
        return self.client.store(m, files)

    def _files(self, paths: Iterable[str | os.PathLike[str]]) -> list[OutgoingFile]:
        from hub.services.importer import iter_files

        out: list[OutgoingFile] = []
        for raw in paths:
            if not Path(raw).exists():
                raise HubError("bad_request", f"no such file or folder: {os.fspath(raw)}")
            out.extend(OutgoingFile(p, str(p)) for p in iter_files([raw]))
        return out

    def _instances(self, refs: list[str]) -> list[OutgoingFile]:
        if not refs:
            return []
        if self.lookup is None or self.blob_path is None:
            raise HubError("bad_request", "this service has no archive to send instances from")
        found = self.lookup.instance_files(refs)
        missing = [r for r in refs if r.strip() not in found]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise HubError("unknown_resource", f"unknown instance {missing[0]!r}{more}")
        out = []
        for ref in refs:
            f = found[ref.strip()]
            out.append(OutgoingFile(self.blob_path(f.blob_key), ref.strip(), f.sop_class_uid, f.sop_instance_uid,
                                    f.transfer_syntax_uid))
        return out

    # ------------------------------------------------------------------ archived resources
    def resolve_resources(self, public_ids: Iterable[str]) -> list[tuple[str, str, list[str]]]:
        """``(public id, level, instance ids)`` for Orthanc patient/study/series/instance ids
        (Orthanc ``GetOrderedChildInstances``); an unknown id is ``unknown_resource``."""
        if self.resources is None:
            raise HubError("bad_request", "this service has no archive to send instances from")
        out = []
        for raw in public_ids:
            public_id = raw.strip()
            found = self.resources.resolve(public_id)
            if found is None:
                raise HubError("unknown_resource", f"unknown resource {public_id!r}")
            out.append((public_id, found[0], found[1]))
        return out

    def store_instances(
        self,
        name: str | Modality,
        instance_ids: Sequence[str],
        *,
        chunk: int = 0,
        progress: Callable[[int, int], None] | None = None,
        check: Callable[[], None] | None = None,
    ) -> StoreReport:
        """C-STORE archived instances in chunks (one association each, ``chunk`` 0: about 20 chunks
        of at least 100), calling ``check()`` before each chunk (a job's stop request raises there)
        and ``progress(done, total)`` after it."""
        m = self.modality(name)
        total = len(instance_ids)
        size = chunk or max(100, -(-total // 20))
        report = StoreReport()
        for start in range(0, total, size):
            if check is not None:
                check()
            part = self.client.store(m, self._instances(list(instance_ids[start : start + size])))
            report.items.extend(part.items)
            report.seconds += part.seconds
            report.bytes += part.bytes
            if progress is not None:
                progress(min(total, start + size), total)
        return report
