"""Read side of the Orthanc resource routes: pages of ids, resource records with their parent and
children, statistics, metadata rows, identifier look-up and the SQL of ``/tools/find``.

Lists are paged in SQL (``OFFSET``/``LIMIT`` on the primary key, Orthanc's ``since``/``limit``);
records are read in batches of :data:`BATCH` (one query per level for the children), never row by
row. ``/tools/find`` compiles the one query model (:class:`hub.domain.query.Query`) with Orthanc's
matching rules: case-insensitive string comparison unless ``CaseSensitive`` (then the raw name and
description columns; names and descriptions otherwise match their upper-cased ``*_norm`` columns, and
an identifier such as PatientID every upper/lower-case spelling of the value, so that the indexes
serve), main tags without their own column read from the stored MainDicomTags JSON;
results ordered by public id (by arrival for instances) as Orthanc 1.10 orders them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import JSON, ColumnElement, Connection, Select, Table, and_, cast, false, func, select

from hub.domain.archive import Level
from hub.domain.query import MATCHABLE, Condition, Match, Query, QueryLevel
from hub.store.db import Database
from hub.store.models import SE, ST, I, P
from hub.store.query import COLUMNS, like_pattern

BATCH = 500
TABLES: dict[Level, Table] = {Level.PATIENT: P, Level.STUDY: ST, Level.SERIES: SE, Level.INSTANCE: I}
ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE)
QUERY_LEVELS = {Level.PATIENT: QueryLevel.PATIENT, Level.STUDY: QueryLevel.STUDY, Level.SERIES: QueryLevel.SERIES,
                Level.INSTANCE: QueryLevel.IMAGE}
LEVEL_OF = {q: lvl for lvl, q in QUERY_LEVELS.items()}
# The column naming the parent of each level's rows.
PARENT_FK = {Level.STUDY: ST.c.patient_pk, Level.SERIES: SE.c.study_pk, Level.INSTANCE: I.c.series_pk}
RAW_TEXT = {"StudyDescription": ST.c.study_description, "SeriesDescription": SE.c.series_description}


MAX_CASE_VARIANTS = 64


def case_variants(value: str) -> list[str] | None:
    """Every upper/lower-case spelling of ``value`` (``"ab1"`` -> ab1, aB1, Ab1, AB1), so that a
    case-insensitive equality can use the column's index; ``None`` when there would be too many."""
    out = [""]
    for char in value:
        forms = {char.lower(), char.upper()}
        if any(len(f) != 1 for f in forms):
            return None
        out = [prefix + f for prefix in out for f in sorted(forms)]
        if len(out) > MAX_CASE_VARIANTS:
            return None
    return out


def child_level(level: Level) -> Level:
    return ORDER[ORDER.index(level) + 1]


def parent_level(level: Level) -> Level:
    return ORDER[ORDER.index(level) - 1]


def _chunks(items: Sequence[Any], size: int = BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ResourceRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ lists and records
    def list_ids(self, level: Level, since: int = 0, limit: int | None = None) -> list[str]:
        """Public ids in arrival order; ``since`` resources skipped, at most ``limit`` (Orthanc)."""
        table = TABLES[level]
        stmt = select(table.c.public_id).order_by(table.c.pk).offset(since or None).limit(limit)
        with self.db.read() as conn:
            return list(conn.execute(stmt).scalars())

    def records(self, level: Level, public_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Records of the known ``public_ids``, in their order (unknown ids left out)."""
        out: dict[str, dict[str, Any]] = {}
        table = TABLES[level]
        with self.db.read() as conn:
            for chunk in _chunks(list(dict.fromkeys(public_ids))):
                for rec in self._records(conn, level, table.c.public_id.in_(chunk)):
                    out[rec["public_id"]] = rec
        return [out[i] for i in public_ids if i in out]

    def record(self, level: Level, public_id: str) -> dict[str, Any] | None:
        found = self.records(level, [public_id])
        return found[0] if found else None

    def _records(self, conn: Connection, level: Level, where: ColumnElement[bool]) -> list[dict[str, Any]]:
        table = TABLES[level]
        cols: list[Any] = [table.c.pk, table.c.public_id, table.c.main_tags]
        stmt: Select[Any]
        if level is Level.PATIENT:
            stmt = select(*cols, P.c.updated_at)
        elif level is Level.STUDY:
            stmt = select(*cols, ST.c.updated_at, P.c.public_id.label("parent_id"), P.c.main_tags.label("p_tags"))
            stmt = stmt.join_from(ST, P, P.c.pk == ST.c.patient_pk)
        elif level is Level.SERIES:
            stmt = select(*cols, SE.c.updated_at, ST.c.public_id.label("parent_id")).join_from(
                SE, ST, ST.c.pk == SE.c.study_pk
            )
        else:
            stmt = select(*cols, I.c.file_size, I.c.blob_key, SE.c.public_id.label("parent_id")).join_from(
                I, SE, SE.c.pk == I.c.series_pk
            )
        rows = conn.execute(stmt.where(where).order_by(table.c.pk)).mappings().all()
        recs: list[dict[str, Any]] = []
        for row in rows:
            rec: dict[str, Any] = {"pk": row["pk"], "public_id": row["public_id"],
                                   "main_tags": json.loads(row["main_tags"])}
            if level is not Level.PATIENT:
                rec["parent_id"] = row["parent_id"]
            if level is Level.INSTANCE:
                rec.update(file_size=row["file_size"], blob_key=row["blob_key"])
            else:
                rec.update(updated_at=row["updated_at"], children=[], children_index=[])
            if level is Level.STUDY:
                rec["patient_tags"] = json.loads(row["p_tags"])
            recs.append(rec)
        if level is not Level.INSTANCE and recs:
            by_pk = {r["pk"]: r for r in recs}
            child = child_level(level)
            ctable, fk = TABLES[child], PARENT_FK[child]
            ccols = [fk.label("parent"), ctable.c.public_id]
            if child is Level.INSTANCE:
                ccols.append(I.c.instance_number)
            for crow in conn.execute(select(*ccols).where(fk.in_(list(by_pk))).order_by(ctable.c.pk)):
                parent = by_pk[crow.parent]
                parent["children"].append(crow.public_id)
                if child is Level.INSTANCE:
                    parent["children_index"].append(None if crow.instance_number is None else str(crow.instance_number))
        return recs

    def descendants(self, level: Level, public_id: str, target: Level) -> list[str] | None:
        """Ids of the ``target`` resources under one resource, in Orthanc's order
        (``GetChildResources``: each level's children lists are prepended, so sibling groups come
        out in reverse); ``None`` when the resource is unknown."""
        table = TABLES[level]
        with self.db.read() as conn:
            pk = conn.execute(select(table.c.pk).where(table.c.public_id == public_id)).scalar()
            if pk is None:
                return None
            current: list[int] = [pk]
            ids: dict[int, str] = {}
            lvl = level
            while lvl is not target:
                lvl = child_level(lvl)
                ctable, fk = TABLES[lvl], PARENT_FK[lvl]
                children: dict[int, list[int]] = {}
                for chunk in _chunks(current):
                    stmt = select(fk.label("parent"), ctable.c.pk, ctable.c.public_id).where(fk.in_(chunk))
                    for row in conn.execute(stmt.order_by(ctable.c.pk)):
                        children.setdefault(row.parent, []).append(row.pk)
                        ids[row.pk] = row.public_id
                nxt: list[int] = []
                for parent in current:
                    nxt = children.get(parent, []) + nxt
                current = nxt
            return [ids[pk] for pk in current]

    def ancestor(self, level: Level, public_id: str, target: Level) -> str | None:
        """Public id of the ``target`` ancestor of a resource; ``None`` when the resource is unknown."""
        table = TABLES[level]
        stmt: Select[Any] = select(TABLES[target].c.public_id).select_from(table)
        lvl = level
        while lvl is not target:
            parent = parent_level(lvl)
            stmt = stmt.join(TABLES[parent], TABLES[parent].c.pk == PARENT_FK[lvl])
            lvl = parent
        with self.db.read() as conn:
            return conn.execute(stmt.where(table.c.public_id == public_id)).scalar()

    # ------------------------------------------------------------------ statistics, metadata, tags
    def statistics(self, level: Level, public_id: str) -> dict[str, int] | None:
        """Counts below a resource and the bytes of its DICOM files; ``None`` when unknown."""
        with self.db.read() as conn:
            if level is Level.INSTANCE:
                size = conn.execute(select(I.c.file_size).where(I.c.public_id == public_id)).scalar()
                return None if size is None else {"size": int(size)}
            table = TABLES[level]
            cols = [table.c.pk, table.c.num_instances]
            if level is not Level.SERIES:
                cols.append(table.c.num_series)
            if level is Level.PATIENT:
                cols.append(P.c.num_studies)
            row = conn.execute(select(*cols).where(table.c.public_id == public_id)).mappings().first()
            if row is None:
                return None
            size_q: Select[Any] = select(func.coalesce(func.sum(I.c.file_size), 0))
            if level is Level.SERIES:
                size_q = size_q.where(I.c.series_pk == row["pk"])
            elif level is Level.STUDY:
                size_q = size_q.join_from(I, SE, SE.c.pk == I.c.series_pk).where(SE.c.study_pk == row["pk"])
            else:
                size_q = (size_q.join_from(I, SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk)
                          .where(ST.c.patient_pk == row["pk"]))
            return {
                "size": int(conn.execute(size_q).scalar_one()),
                "instances": row["num_instances"],
                "series": row.get("num_series", 0),
                "studies": row.get("num_studies", 0),
            }

    def instance_row(self, public_id: str) -> dict[str, Any] | None:
        """What the index recorded about how an instance arrived (Orthanc's instance metadata)."""
        cols = (I.c.main_tags, I.c.received_at, I.c.origin_protocol, I.c.origin_remote_aet, I.c.origin_remote_ip,
                I.c.origin_called_aet, I.c.origin_user, I.c.transfer_syntax_uid, I.c.sop_class_uid,
                I.c.pixel_data_offset)
        with self.db.read() as conn:
            row = conn.execute(select(*cols).where(I.c.public_id == public_id)).mappings().first()
        if row is None:
            return None
        rec = dict(row)
        rec["main_tags"] = json.loads(rec["main_tags"])
        return rec

    def parent_row(self, level: Level, public_id: str) -> dict[str, Any] | None:
        """``updated_at`` and MainDicomTags of a patient, study or series; for a series also the
        remote AE title of its oldest instance (Orthanc's series ``RemoteAET`` metadata)."""
        table = TABLES[level]
        with self.db.read() as conn:
            row = conn.execute(
                select(table.c.pk, table.c.updated_at, table.c.main_tags).where(table.c.public_id == public_id)
            ).first()
            if row is None:
                return None
            rec: dict[str, Any] = {"updated_at": row.updated_at, "main_tags": json.loads(row.main_tags)}
            if level is Level.SERIES:
                rec["first_remote_aet"] = conn.execute(
                    select(I.c.origin_remote_aet).where(I.c.series_pk == row.pk).order_by(I.c.pk).limit(1)
                ).scalar()
            return rec

    def instance_datasets(self, level: Level, public_id: str) -> list[tuple[str, str]] | None:
        """(DICOM JSON, MainDicomTags JSON) of every instance under a resource, as stored;
        ``None`` when the resource is unknown."""
        table = TABLES[level]
        with self.db.read() as conn:
            pk = conn.execute(select(table.c.pk).where(table.c.public_id == public_id)).scalar()
            if pk is None:
                return None
            stmt: Select[Any] = select(I.c.metadata_json, I.c.main_tags)
            if level is Level.INSTANCE:
                stmt = stmt.where(I.c.pk == pk)
            elif level is Level.SERIES:
                stmt = stmt.where(I.c.series_pk == pk)
            elif level is Level.STUDY:
                stmt = stmt.join_from(I, SE, SE.c.pk == I.c.series_pk).where(SE.c.study_pk == pk)
            else:
                stmt = (stmt.join_from(I, SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk)
                        .where(ST.c.patient_pk == pk))
            return [(r.metadata_json, r.main_tags) for r in conn.execute(stmt.order_by(I.c.pk))]

    def lookup(self, value: str) -> list[tuple[Level, str]]:
        """Orthanc ``/tools/lookup``: resources whose PatientID (compared upper-cased), Study,
        Series or SOP Instance UID is ``value``, patients first."""
        value = value.strip()
        if not value:
            return []
        probes = (
            (Level.PATIENT, select(P.c.public_id).where(func.upper(P.c.patient_id) == value.upper())),
            (Level.STUDY, select(ST.c.public_id).where(ST.c.study_uid == value)),
            (Level.SERIES, select(SE.c.public_id).where(SE.c.series_uid == value)),
            (Level.INSTANCE, select(I.c.public_id).where(I.c.sop_instance_uid == value)),
        )
        out: list[tuple[Level, str]] = []
        with self.db.read() as conn:
            for level, stmt in probes:
                out.extend((level, pid) for pid in conn.execute(stmt.order_by(TABLES[level].c.pk)).scalars())
        return out

    # ------------------------------------------------------------------ /tools/find
    def find_statement(self, query: Query) -> Select[Any]:
        """``SELECT public_id`` of the resources of the query level matching every condition,
        in Orthanc's order (public id; arrival for instances)."""
        level = LEVEL_OF[query.level]
        table = TABLES[level]
        needed = {QUERY_LEVELS[level]} | {c.level if c.level is not None else MATCHABLE[c.keyword][0]
                                          for c in query.conditions}
        from_: Any = table
        lvl = level
        while lvl is not Level.PATIENT:
            parent = parent_level(lvl)
            if min(needed) > QUERY_LEVELS[parent]:
                break
            from_ = from_.join(TABLES[parent], TABLES[parent].c.pk == PARENT_FK[lvl])
            lvl = parent
        # Public ids all have the same shape (hex groups at the same dashes), so that every collation
        # orders them as Orthanc's SQLite GROUP BY does (byte order).
        if level is Level.INSTANCE:
            stmt = select(table.c.public_id, table.c.pk.label("sort_key")).order_by(table.c.pk)
        else:
            stmt = select(table.c.public_id).order_by(table.c.public_id)
        stmt = stmt.select_from(from_)
        for cond in query.conditions:
            stmt = stmt.where(self._compile(cond, query.case_insensitive_names))
        return stmt

    def find(self, query: Query, since: int = 0, limit: int = 0) -> list[str]:
        stmt = self.find_statement(query).offset(since or None).limit(limit or None)
        with self.db.read() as conn:
            return [row.public_id for row in conn.execute(stmt)]

    def find_with_dataset(self, query: Query, page: int = BATCH) -> Iterator[tuple[str, str | None]]:
        """(public id, DICOM JSON of its first instance) of each match, in order, in pages: for the
        conditions on tags that only the files hold (Orthanc reads one instance per candidate)."""
        level = LEVEL_OF[query.level]
        table = TABLES[level]
        if level is Level.INSTANCE:
            first = I.c.metadata_json
        else:
            inner: Select[Any] = select(I.c.metadata_json)
            if level is Level.SERIES:
                inner = inner.where(I.c.series_pk == SE.c.pk)
            elif level is Level.STUDY:
                inner = inner.join_from(I, SE, SE.c.pk == I.c.series_pk).where(SE.c.study_pk == ST.c.pk)
            else:
                inner = (inner.join_from(I, SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk)
                         .where(ST.c.patient_pk == P.c.pk))
            first = inner.order_by(I.c.pk).limit(1).correlate(table).scalar_subquery()
        base = self.find_statement(query).add_columns(first.label("dataset"))
        key_col = table.c.pk if level is Level.INSTANCE else table.c.public_id
        last: Any = None
        with self.db.read() as conn:
            while True:
                stmt = base if last is None else base.where(key_col > last)
                rows = conn.execute(stmt.limit(page)).all()
                for row in rows:
                    yield row.public_id, row.dataset
                if len(rows) < page:
                    return
                last = rows[-1].sort_key if level is Level.INSTANCE else rows[-1].public_id

    def _compile(self, cond: Condition, insensitive: bool) -> ColumnElement[bool]:
        keyword = cond.keyword
        if keyword == "ModalitiesInStudy":
            return ST.c.pk.in_(select(SE.c.study_pk).where(SE.c.modality.in_(list(cond.value))))
        value: Any = cond.value
        if keyword in COLUMNS:
            table, column, raw = COLUMNS[keyword]
            kind = MATCHABLE[keyword][1]
            col: Any = table.c[column]
            if kind in ("name", "text") and not insensitive:
                col = table.c[raw] if raw else RAW_TEXT[keyword]
            elif kind == "string" and insensitive:
                if cond.match in (Match.SINGLE, Match.LIST):
                    values = value if isinstance(value, tuple) else (value,)
                    variants = [case_variants(v) for v in values]
                    if all(v is not None for v in variants):  # indexed: col IN (every spelling)
                        return col.in_([form for forms in variants for form in forms or ()])
                col = func.upper(col)
            elif kind == "int":
                value = tuple(int(v) for v in value) if isinstance(value, tuple) else int(value)
        else:
            level = LEVEL_OF[cond.level or MATCHABLE[keyword][0]]
            col = self._main_tag(TABLES[level], keyword)
            if insensitive:
                col = func.upper(col)
        if cond.match is Match.SINGLE:
            return col == value
        if cond.match is Match.LIST:
            return col.in_(list(value)) if value else false()
        if cond.match is Match.WILDCARD:
            pattern, escape = like_pattern(str(value))
            return col.like(pattern, escape="\\") if escape else col.like(pattern)
        lo, hi = value
        clauses = [col >= lo] if lo is not None else []
        if hi is not None:
            clauses.append(col <= hi)
        return and_(*clauses)

    def _main_tag(self, table: Table, keyword: str) -> Any:
        """One value of the stored MainDicomTags JSON (no index: for the rarely queried tags)."""
        if self.db.is_sqlite:
            return func.json_extract(table.c.main_tags, f'$."{keyword}"')
        return func.json_extract_path_text(cast(table.c.main_tags, JSON), keyword)
