"""SQLAlchemy 2 models of the archive index.

Every attribute that C-FIND (PS3.4 C.2.2.2), QIDO-RS (PS3.18 10.6), Orthanc ``/tools/find`` and FHIR
search match on has its own indexed column; names and descriptions have an upper-cased ``*_norm``
column for case-insensitive matching (with a ``text_pattern_ops`` index on PostgreSQL so that
``LIKE 'SMI%'`` uses it). Counts for the NumberOf*Related* keys are kept on the parents.
The schema is created by the Alembic migrations in ``migrations/``, never by ``create_all``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)
PK = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is the rowid on SQLite


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _pattern_index(name: str, column: str) -> Index:
    """B-tree index usable by prefix LIKE on PostgreSQL whatever the database collation."""
    return Index(name, column, postgresql_ops={column: "text_pattern_ops"})


class Patient(Base):
    __tablename__ = "patients"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(44), unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    issuer_of_patient_id: Mapped[str | None] = mapped_column(String(64), index=True)
    patient_name: Mapped[str] = mapped_column(String(324))
    patient_name_norm: Mapped[str | None] = mapped_column(String(324))
    birth_date: Mapped[str | None] = mapped_column(String(8), index=True)
    sex: Mapped[str | None] = mapped_column(String(16), index=True)
    num_studies: Mapped[int] = mapped_column(Integer, default=0)
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    main_tags: Mapped[str] = mapped_column(Text)  # JSON, Orthanc MainDicomTags
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (_pattern_index("ix_patients_patient_name_norm", "patient_name_norm"),)


class Study(Base):
    __tablename__ = "studies"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(44), unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.pk", ondelete="CASCADE"), index=True)
    study_uid: Mapped[str] = mapped_column(UID, index=True)
    study_date: Mapped[str | None] = mapped_column(String(8), index=True)
    study_time: Mapped[str | None] = mapped_column(String(13), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)  # UTC; FHIR ``started``
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    study_id: Mapped[str | None] = mapped_column(String(64), index=True)
    study_description: Mapped[str | None] = mapped_column(String(256))
    study_description_norm: Mapped[str | None] = mapped_column(String(256))
    referring_physician_name: Mapped[str | None] = mapped_column(String(324))
    referring_physician_norm: Mapped[str | None] = mapped_column(String(324))
    institution_name: Mapped[str | None] = mapped_column(String(128))
    modalities_in_study: Mapped[str | None] = mapped_column(String(256), index=True)  # "CT\\SR"
    num_series: Mapped[int] = mapped_column(Integer, default=0)
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    main_tags: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (
        _pattern_index("ix_studies_study_description_norm", "study_description_norm"),
        _pattern_index("ix_studies_referring_physician_norm", "referring_physician_norm"),
        Index("ix_studies_study_date_time", "study_date", "study_time"),
    )


class Series(Base):
    __tablename__ = "series"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(44), unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(UID, index=True)
    modality: Mapped[str | None] = mapped_column(String(16), index=True)
    series_number: Mapped[int | None] = mapped_column(Integer, index=True)
    series_description: Mapped[str | None] = mapped_column(String(256))
    series_description_norm: Mapped[str | None] = mapped_column(String(256))
    body_part_examined: Mapped[str | None] = mapped_column(String(64), index=True)
    series_date: Mapped[str | None] = mapped_column(String(8), index=True)
    series_time: Mapped[str | None] = mapped_column(String(13))
    station_name: Mapped[str | None] = mapped_column(String(64), index=True)
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    num_instances: Mapped[int] = mapped_column(Integer, default=0)
    main_tags: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    __table_args__ = (
        _pattern_index("ix_series_series_description_norm", "series_description_norm"),
        Index("ix_series_study_pk_modality", "study_pk", "modality"),
    )


class Instance(Base):
    __tablename__ = "instances"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(44), unique=True)
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.pk", ondelete="CASCADE"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    sop_class_uid: Mapped[str] = mapped_column(UID, index=True)
    instance_number: Mapped[int | None] = mapped_column(Integer, index=True)
    number_of_frames: Mapped[int] = mapped_column(Integer, default=1)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    file_size: Mapped[int] = mapped_column(BigInteger)
    pixel_data_offset: Mapped[int | None] = mapped_column(BigInteger)  # byte offset of the (7FE0,0010) tag
    main_tags: Mapped[str] = mapped_column(Text)
    metadata_json: Mapped[str] = mapped_column(Text)  # PS3.18 F.2 DICOM JSON, bulk data by reference
    origin_protocol: Mapped[str] = mapped_column(String(16))
    origin_remote_aet: Mapped[str | None] = mapped_column(String(16))
    origin_remote_ip: Mapped[str | None] = mapped_column(String(64))
    origin_called_aet: Mapped[str | None] = mapped_column(String(16))
    origin_user: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Change(Base):
    """Orthanc ``/changes`` log: one row per event, ``seq`` strictly increasing."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    change_type: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(16))
    public_id: Mapped[str] = mapped_column(String(44), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class BlobTrash(Base):
    """Blobs to delete once the transaction that released them has committed (crash-safe deletes)."""

    __tablename__ = "blob_trash"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    blob_key: Mapped[str] = mapped_column(String(64))


class User(Base):
    __tablename__ = "users"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    roles: Mapped[str] = mapped_column(String(128))  # comma-separated: admin,user,uploader
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DeclaredModality(Base):
    """A remote DICOM node declared at run time (Orthanc ``PUT /modalities/{name}``), or a
    ``[modalities]`` entry of the settings file overridden or (``removed``) deleted that way."""

    __tablename__ = "modalities"

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    aet: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    manufacturer: Mapped[str] = mapped_column(String(32))
    allow_echo: Mapped[bool] = mapped_column(Boolean)
    allow_find: Mapped[bool] = mapped_column(Boolean)
    allow_find_worklist: Mapped[bool] = mapped_column(Boolean)
    allow_move: Mapped[bool] = mapped_column(Boolean)
    allow_get: Mapped[bool] = mapped_column(Boolean)
    allow_store: Mapped[bool] = mapped_column(Boolean)
    allow_n_action: Mapped[bool] = mapped_column(Boolean)
    allow_event_report: Mapped[bool] = mapped_column(Boolean)
    allow_transcoding: Mapped[bool] = mapped_column(Boolean)
    local_aet: Mapped[str] = mapped_column(String(16))
    timeout: Mapped[int] = mapped_column(Integer)
    use_dicom_tls: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


# Core tables for the SQL-level code of hub/store (one name each, used by every repository).
P: Table = Patient.__table__  # type: ignore[assignment]
ST: Table = Study.__table__  # type: ignore[assignment]
SE: Table = Series.__table__  # type: ignore[assignment]
I: Table = Instance.__table__  # type: ignore[assignment]  # noqa: E741
CH: Table = Change.__table__  # type: ignore[assignment]
TRASH: Table = BlobTrash.__table__  # type: ignore[assignment]
USERS: Table = User.__table__  # type: ignore[assignment]
MODALITIES: Table = DeclaredModality.__table__  # type: ignore[assignment]
