"""Read-only look-ups of DICOMweb retrieval (PS3.18 10.4): the instances of a study, series or
instance by UID, in series/instance order, with their stored DICOM JSON as text (never re-parsed
or re-read from the files for metadata)."""

from __future__ import annotations

from sqlalchemy import literal, select

from hub.domain.wado import WadoInstance
from hub.store.db import Database
from hub.store.models import SE, ST, I


class WadoRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def instances(self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None,
                  *, with_metadata: bool = True) -> list[WadoInstance]:
        """The stored instances under the given UIDs, ordered by series number, instance number."""
        meta = I.c.metadata_json if with_metadata else literal("")
        stmt = (
            select(ST.c.study_uid, SE.c.series_uid, I.c.sop_instance_uid, I.c.sop_class_uid,
                   I.c.transfer_syntax_uid, I.c.blob_key, I.c.file_size, I.c.number_of_frames, meta,
                   I.c.received_at, I.c.pixel_data_offset, I.c.public_id)
            .select_from(I.join(SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk))
            .where(ST.c.study_uid == study_uid)
        )
        if series_uid is not None:
            stmt = stmt.where(SE.c.series_uid == series_uid)
        if sop_uid is not None:
            stmt = stmt.where(I.c.sop_instance_uid == sop_uid)
        stmt = stmt.order_by(SE.c.series_number, SE.c.pk, I.c.instance_number, I.c.pk)
        with self.db.read() as conn:
            return [WadoInstance(*row) for row in conn.execute(stmt).all()]

    def instance_by_uid(self, sop_uid: str) -> WadoInstance | None:
        """One instance by SOP Instance UID alone (WADO-URI names all three, but the SOP UID is unique)."""
        stmt = (
            select(ST.c.study_uid, SE.c.series_uid, I.c.sop_instance_uid, I.c.sop_class_uid,
                   I.c.transfer_syntax_uid, I.c.blob_key, I.c.file_size, I.c.number_of_frames, I.c.metadata_json,
                   I.c.received_at, I.c.pixel_data_offset, I.c.public_id)
            .select_from(I.join(SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk))
            .where(I.c.sop_instance_uid == sop_uid)
        )
        with self.db.read() as conn:
            row = conn.execute(stmt).first()
        return WadoInstance(*row) if row else None
