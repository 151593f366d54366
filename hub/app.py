"""Composition root of the core: builds the services once; adapters receive this object."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hub import __version__
from hub.services.auth import AuthService
from hub.services.commitment import CommitmentService
from hub.services.ingest import IngestService
from hub.services.query import QueryService
from hub.services.retrieve import RetrieveService
from hub.settings import Settings
from hub.store import BlobStore, Database, IndexRepository, UserRepository
from hub.store import db as dbmod
from hub.store.commitment import CommitmentRepository
from hub.store.query import QueryRepository
from hub.store.retrieve import RetrieveRepository

log = logging.getLogger(__name__)


class SchemaOutOfDate(RuntimeError):
    pass


@dataclass
class Hub:
    settings: Settings
    db: Database
    blobs: BlobStore
    index: IndexRepository
    users: UserRepository
    ingest: IngestService
    auth: AuthService
    commitment: CommitmentService
    query: QueryService
    retrieve: RetrieveService
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    generated_admin_password: str | None = None
    version: str = __version__

    @classmethod
    def open(cls, settings: Settings, *, upgrade_schema: bool | None = None, bootstrap_admin: bool = True) -> Hub:
        """Open the index and blob store, recover from a crash, and bootstrap the admin user.

        The embedded SQLite schema is upgraded automatically; a PostgreSQL schema must be
        upgraded with ``rishub db upgrade`` (or ``upgrade_schema=True``).
        """
        data = settings.data_path
        data.mkdir(parents=True, exist_ok=True)
        url = settings.effective_database_url
        if upgrade_schema is None:
            upgrade_schema = settings.is_sqlite
        if upgrade_schema:
            dbmod.upgrade(url)
        else:
            current, head = dbmod.current_revision(url), head_revision()
            if current != head:
                raise SchemaOutOfDate(
                    f"database schema is at {current or 'nothing'}, this version needs {head}: run 'rishub db upgrade'"
                )
        db = Database(url)
        blobs = BlobStore(data, fsync=settings.storage.fsync)
        index = IndexRepository(db)
        users = UserRepository(db)
        ingest = IngestService(blobs, index, duplicate_policy=settings.storage.duplicate_policy)
        auth = AuthService(users, settings.auth.jwt)
        commitment = CommitmentService(CommitmentRepository(db), blobs)
        query = QueryService(QueryRepository(db), settings.ae_title)
        retrieve = RetrieveService(RetrieveRepository(db), blobs)
        hub = cls(
            settings=settings, db=db, blobs=blobs, index=index, users=users, ingest=ingest, auth=auth, query=query,
            commitment=commitment, retrieve=retrieve,
        )
        published, deleted, trashed = ingest.recover()
        if published or deleted or trashed:
            log.warning(
                "recovered after an unclean stop: %d staged blobs published, %d discarded, %d released blobs removed",
                published, deleted, trashed,
            )
        if bootstrap_admin:
            hub.generated_admin_password = auth.ensure_admin(settings.admin_password, data)
        return hub

    def close(self) -> None:
        self.blobs.close()
        self.db.dispose()


def head_revision() -> str | None:
    return dbmod.head_revision()


def _prepare(settings: Settings) -> str:
    if settings.is_sqlite:
        settings.data_path.mkdir(parents=True, exist_ok=True)
    return settings.effective_database_url


def upgrade_schema(settings: Settings, revision: str = "head") -> str | None:
    """``rishub db upgrade``: apply the Alembic migrations; returns the new revision."""
    url = _prepare(settings)
    dbmod.upgrade(url, revision)
    return dbmod.current_revision(url)


def schema_revision(settings: Settings) -> str | None:
    return dbmod.current_revision(_prepare(settings))
