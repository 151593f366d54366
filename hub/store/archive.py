"""Read side of ZIP archives and DICOMDIR media (Orthanc ``/archive``, ``/media``, ``/tools/create-*``).

Two reads: which level each requested Orthanc id is at (one indexed look-up per table, in one
statement), then, per level asked for, one SELECT of every instance under those resources joined up
to its patient, with the few index columns that name the ZIP folders (the same strings as Orthanc's
MainDicomTags: ``mappings.dicom_to_index``) and where its blob is. Rows come in arrival order
(``instances.pk``), which is the order Orthanc lists a series' children in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import literal, select, union_all

from hub.store.db import Database
from hub.store.models import SE, ST, I, P

LEVELS = ("Patient", "Study", "Series", "Instance")
_CHUNK = 500  # ids per IN list


class ArchiveRow(NamedTuple):
    """One stored instance with its parents' ids and the tags its ZIP path is made of."""

    patient_id: str  # Orthanc ids
    study_id: str
    series_id: str
    instance_id: str
    patient_tags: tuple[str | None, str | None]  # PatientID, PatientName
    study_tags: tuple[str | None, str | None]  # AccessionNumber, StudyDescription
    series_tags: tuple[str | None, str | None]  # Modality, SeriesDescription
    blob_key: str
    file_size: int
    pk: int


class ArchiveRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def levels(self, public_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Orthanc id -> (level, row pk) for the ids that exist, whatever their level."""
        found: dict[str, tuple[str, int]] = {}
        unique = list(dict.fromkeys(public_ids))
        tables = (P, ST, SE, I)
        with self.db.read() as conn:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i : i + _CHUNK]
                query = union_all(
                    *(
                        select(literal(n).label("level"), t.c.public_id, t.c.pk).where(t.c.public_id.in_(chunk))
                        for n, t in enumerate(tables)
                    )
                )
                for level, public_id, pk in conn.execute(query):
                    found[public_id] = (LEVELS[level], pk)
        return found

    def instances(self, level: str, pks: Sequence[int]) -> list[ArchiveRow]:
        """Every instance under the resources ``pks`` of ``level``, in arrival order."""
        if not pks:
            return []
        query = select(
            P.c.public_id, ST.c.public_id, SE.c.public_id, I.c.public_id,
            P.c.patient_id, P.c.patient_name, ST.c.accession_number, ST.c.study_description,
            SE.c.modality, SE.c.series_description, I.c.blob_key, I.c.file_size, I.c.pk,
        ).select_from(I.join(SE, I.c.series_pk == SE.c.pk).join(ST, SE.c.study_pk == ST.c.pk)
                      .join(P, ST.c.patient_pk == P.c.pk))
        column = {"Patient": ST.c.patient_pk, "Study": SE.c.study_pk, "Series": I.c.series_pk,
                  "Instance": I.c.pk}[level]
        rows: list[ArchiveRow] = []
        with self.db.read() as conn:
            for i in range(0, len(pks), _CHUNK):
                chunk = list(pks[i : i + _CHUNK])
                for r in conn.execute(query.where(column.in_(chunk)).order_by(I.c.pk)):
                    rows.append(ArchiveRow(r[0], r[1], r[2], r[3], (r[4], r[5]), (r[6], r[7]), (r[8], r[9]),
                                           r[10], int(r[11]), int(r[12])))
        if len(pks) > _CHUNK:
            rows.sort(key=lambda row: row.pk)
        return rows
