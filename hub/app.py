"""Composition root of the core: builds the services once; adapters receive this object."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub import __version__
from hub.services.archive import ArchiveService
from hub.services.auth import AuthService
from hub.services.commitment import CommitmentService
from hub.services.content import ContentService
from hub.services.fhir import FhirService
from hub.services.fhir_orders import FhirOrderPolicy, FhirOrderService
from hub.services.hl7_inbound import Hl7InboundService
from hub.services.ingest import IngestService
from hub.services.jobs import JobService
from hub.services.modalities import ModalityDirectory
from hub.services.modify import AnonymizationCounter, ModifyService
from hub.services.mpps import MppsService
from hub.services.order_status import OrderStatusReporter
from hub.services.query import QueryService
from hub.services.render import RenderService
from hub.services.resources import ResourceService
from hub.services.retrieve import RetrieveService
from hub.services.wado import WadoService
from hub.services.worklist import WorklistService
from hub.settings import Settings, pairs
from hub.store import BlobStore, Database, IndexRepository, UserRepository
from hub.store import db as dbmod
from hub.store.archive import ArchiveRepository
from hub.store.commitment import CommitmentRepository
from hub.store.fhir import FhirRepository
from hub.store.lookup import LookupRepository
from hub.store.modalities import ModalityRepository
from hub.store.orders import OrderRepository
from hub.store.outbox import OutboxRepository
from hub.store.query import QueryRepository
from hub.store.render import RenderRepository
from hub.store.retrieve import RetrieveRepository
from hub.store.wado import WadoRepository
from hub.store.worklist_items import WorklistItems

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
    wado: WadoService
    archive: ArchiveService
    modalities: ModalityDirectory
    jobs: JobService
    modify: ModifyService
    resources: ResourceService
    content: ContentService
    orders: OrderRepository
    outbox: OutboxRepository
    worklist: WorklistService
    mpps: MppsService
    hl7: Hl7InboundService
    worklist_items: WorklistItems
    fhir: FhirService
    fhir_orders: FhirOrderService
    render: RenderService
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
        workers = settings.storage.parse_workers
        if workers < 0:
            workers = min(os.cpu_count() or 1, 4) if (os.cpu_count() or 1) > 1 else 0
        ingest = IngestService(blobs, index, duplicate_policy=settings.storage.duplicate_policy, parse_workers=workers)
        auth = AuthService(users, settings.auth.jwt)
        commitment = CommitmentService(CommitmentRepository(db), blobs)
        query = QueryService(QueryRepository(db), settings.ae_title)
        retrieve = RetrieveService(RetrieveRepository(db), blobs)
        modalities = ModalityDirectory(settings, ModalityRepository(db))
        orders = OrderRepository(db)
        fhir = FhirService(FhirRepository(db))
        hub = cls(
            resources=ResourceService.build(db, blobs, index, stable_age=settings.storage.stable_age),
            modalities=modalities, jobs=JobService(),
            modify=ModifyService(ingest, blobs.path, ArchiveRepository(db),
                                 AnonymizationCounter(data / "anonymization-sequence")),
            settings=settings, db=db, blobs=blobs, index=index, users=users, ingest=ingest, auth=auth, query=query,
            commitment=commitment, retrieve=retrieve, wado=WadoService(WadoRepository(db), blobs),
            archive=ArchiveService(ArchiveRepository(db), blobs, deflate=settings.storage.archive_deflate),
            content=ContentService(LookupRepository(db), blobs),
            orders=orders, outbox=OutboxRepository(db), worklist_items=WorklistItems(db),
            worklist=WorklistService(db, settings.hl7.worklist_statuses),
            mpps=MppsService(db, OrderStatusReporter(settings.hl7)), hl7=Hl7InboundService(orders, settings.hl7),
            fhir=fhir, fhir_orders=_fhir_orders(orders, db, fhir, settings),
            render=RenderService(RenderRepository(db), blobs, settings.render),
        )
        hub.modify.delete = hub.resources.delete  # KeepSource=false removes the sources
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
        self.render.close()
        self.jobs.shutdown()
        self.ingest.close()
        self.blobs.close()
        self.db.dispose()


def _fhir_orders(orders: OrderRepository, db: Database, fhir: FhirService, settings: Settings) -> FhirOrderService:
    """FHIR orders share the HL7 side's site tables (station by modality) and the read side's Patient ids."""
    policy = FhirOrderPolicy(station_by_modality=pairs(settings.hl7.station_by_modality))

    def patient_ref(order: Any) -> str:  # noqa: ANN401 - an orders row
        return f"Patient/{fhir.patient_id_for(order['patient_id'], order['issuer_of_patient_id'])}"

    def patient_lookup(ref: str) -> dict[str, Any] | None:
        return fhir.read_patient(ref.rsplit("/", 1)[-1])

    return FhirOrderService(orders, db, policy, patient_ref=patient_ref, patient_lookup=patient_lookup)


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
