"""Read side of the render service: a series' instances with their stored DICOM JSON and blob keys, and
the stamp that changes whenever the series does (so a cached volume is never stale)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from hub.domain.wado import WadoInstance
from hub.store.db import Database
from hub.store.models import SE, ST, I


@dataclass(frozen=True)
class RenderSeries:
    public_id: str  # Orthanc id of the series
    series_uid: str
    stamp: str  # changes with every instance added or removed
    instances: list[WadoInstance]


class RenderRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def stamp(self, ref: str) -> tuple[str, str] | None:
        """(public id, stamp) of the series named by its Orthanc id or its Series Instance UID."""
        stmt = select(SE.c.public_id, SE.c.updated_at, SE.c.num_instances).where(_named(ref)).limit(1)
        with self.db.read() as conn:
            row = conn.execute(stmt).first()
        return (row[0], _stamp(row[1], row[2])) if row else None

    def series(self, ref: str) -> RenderSeries | None:
        """The series with every instance's metadata, in one round trip."""
        stmt = (
            select(SE.c.public_id, SE.c.series_uid, SE.c.updated_at, SE.c.num_instances, ST.c.study_uid,
                   I.c.sop_instance_uid, I.c.sop_class_uid, I.c.transfer_syntax_uid, I.c.blob_key, I.c.file_size,
                   I.c.number_of_frames, I.c.metadata_json, I.c.received_at, I.c.pixel_data_offset, I.c.public_id)
            .select_from(SE.join(ST, ST.c.pk == SE.c.study_pk).join(I, I.c.series_pk == SE.c.pk))
            .where(_named(ref))
            .order_by(I.c.pk)
        )
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return None
        first = rows[0]
        instances = [WadoInstance(r[4], r[1], *r[5:]) for r in rows if r[1] == first[1] and r[0] == first[0]]
        return RenderSeries(first[0], first[1], _stamp(first[2], first[3]), instances)


def _named(ref: str):  # noqa: ANN202 - a SQLAlchemy clause
    return or_(SE.c.public_id == ref, SE.c.series_uid == ref) if "." in ref else SE.c.public_id == ref


def _stamp(updated: datetime, count: int) -> str:
    return f"{updated.isoformat()}-{count}"
