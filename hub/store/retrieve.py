"""Retrieve look-up: the stored instances a C-MOVE/C-GET names by unique keys (PS3.4 C.4.2.2.1).

One SELECT over instances joined up to their patient, filtered on indexed unique-key columns
(``studies.study_uid``, ``series.series_uid``, ``instances.sop_instance_uid``, ``patients.patient_id``)
and returning only what the sender needs, never the archive's metadata.
"""

from __future__ import annotations

from sqlalchemy import select

from hub.domain.retrieve import RetrieveKeys, StoredInstance
from hub.store.db import Database
from hub.store.models import SE, ST, I, P


class RetrieveRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def instances(self, keys: RetrieveKeys) -> list[StoredInstance]:
        """The instances matching every given key, ordered by study, series (number, then arrival)
        and InstanceNumber. Keys above the level narrow the match (PS3.4 C.4.2.2.1)."""
        if not keys.level_keys():
            raise ValueError("a retrieve needs the unique key of its level")
        query = (
            select(I.c.sop_class_uid, I.c.sop_instance_uid, I.c.transfer_syntax_uid, I.c.blob_key, I.c.file_size)
            .select_from(I.join(SE, I.c.series_pk == SE.c.pk).join(ST, SE.c.study_pk == ST.c.pk))
        )
        if keys.patient_ids:
            query = query.join(P, ST.c.patient_pk == P.c.pk).where(P.c.patient_id.in_(keys.patient_ids))
        if keys.study_uids:
            query = query.where(ST.c.study_uid.in_(keys.study_uids))
        if keys.series_uids:
            query = query.where(SE.c.series_uid.in_(keys.series_uids))
        if keys.sop_instance_uids:
            query = query.where(I.c.sop_instance_uid.in_(keys.sop_instance_uids))
        query = query.order_by(
            ST.c.pk,
            SE.c.series_number.asc().nulls_last(),
            SE.c.pk,
            I.c.instance_number.asc().nulls_last(),
            I.c.pk,
        )
        with self.db.read() as conn:
            return [StoredInstance(*row) for row in conn.execute(query)]
