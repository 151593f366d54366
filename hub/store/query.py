"""Query model -> SQL over the indexed columns (PS3.4 C.2.2.2 matching); rows streamed, never
filtered in Python.

Wildcards become ``LIKE`` (``*`` -> ``%``, ``?`` -> ``_``); person names and descriptions match
their upper-cased ``*_norm`` columns, so case-insensitive matching uses the same indexes (a
``text_pattern_ops`` index on PostgreSQL, ``case_sensitive_like`` on SQLite).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Table, and_, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH

from hub.domain.query import MATCHABLE, Condition, ItemKey, Match, Query, QueryLevel
from hub.store.db import Database
from hub.store.models import SE, ST, I, P

# keyword -> (table, column name; raw column when names are matched case-sensitively)
COLUMNS: dict[str, tuple[Table, str, str | None]] = {
    "PatientID": (P, "patient_id", None),
    "IssuerOfPatientID": (P, "issuer_of_patient_id", None),
    "PatientName": (P, "patient_name_norm", "patient_name"),
    "PatientBirthDate": (P, "birth_date", None),
    "PatientSex": (P, "sex", None),
    "StudyInstanceUID": (ST, "study_uid", None),
    "StudyDate": (ST, "study_date", None),
    "StudyTime": (ST, "study_time", None),
    "AccessionNumber": (ST, "accession_number", None),
    "StudyID": (ST, "study_id", None),
    "StudyDescription": (ST, "study_description_norm", None),
    "ReferringPhysicianName": (ST, "referring_physician_norm", "referring_physician_name"),
    "SeriesInstanceUID": (SE, "series_uid", None),
    "Modality": (SE, "modality", None),
    "SeriesNumber": (SE, "series_number", None),
    "SeriesDescription": (SE, "series_description_norm", None),
    "BodyPartExamined": (SE, "body_part_examined", None),
    "SeriesDate": (SE, "series_date", None),
    "SOPInstanceUID": (I, "sop_instance_uid", None),
    "SOPClassUID": (I, "sop_class_uid", None),
    "InstanceNumber": (I, "instance_number", None),
}
assert set(COLUMNS) | {"ModalitiesInStudy"} == set(MATCHABLE)

LEVEL_TABLE = {QueryLevel.PATIENT: P, QueryLevel.STUDY: ST, QueryLevel.SERIES: SE, QueryLevel.IMAGE: I}
PK_LABEL = {QueryLevel.PATIENT: "p_pk", QueryLevel.STUDY: "st_pk", QueryLevel.SERIES: "se_pk", QueryLevel.IMAGE: "i_pk"}


def like_pattern(value: str) -> tuple[str, bool]:
    """DICOM wildcard -> LIKE pattern; returns (pattern, needs an ESCAPE clause)."""
    needs_escape = any(c in value for c in "%_\\")
    out = []
    for c in value:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out), needs_escape


def _condition(cond: Condition, case_insensitive: bool, level: QueryLevel, is_sqlite: bool) -> ColumnElement[bool]:
    if cond.match is Match.SEQUENCE:
        return _sequence_condition(cond, level, is_sqlite)
    kind = MATCHABLE[cond.keyword][1]
    if kind == "modalities":
        # Driven from the series' modality index (ix_series_modality), not probed per study.
        return ST.c.pk.in_(select(SE.c.study_pk).where(SE.c.modality.in_(list(cond.value))))
    table, column, raw = COLUMNS[cond.keyword]
    col = table.c[column]
    value = cond.value
    if kind == "name" and not case_insensitive and raw:
        col = table.c[raw]
    if kind == "int":
        value = tuple(int(v) for v in value) if isinstance(value, tuple) else int(value)  # type: ignore[arg-type]
    if cond.match is Match.SINGLE:
        return col == value
    if cond.match is Match.LIST:
        return col.in_(list(value))  # type: ignore[arg-type]
    if cond.match is Match.WILDCARD:
        pattern, escape = like_pattern(str(value))
        return col.like(pattern, escape="\\") if escape else col.like(pattern)
    lo, hi = value  # type: ignore[misc]
    clauses = []
    if lo is not None:
        clauses.append(col >= lo)
    if hi is not None:
        clauses.append(col <= hi)
    return and_(*clauses)


# --------------------------------------------------------------------------- sequence matching


def _sequence_condition(cond: Condition, level: QueryLevel, is_sqlite: bool) -> ColumnElement[bool]:
    """PS3.4 C.2.2.2.6 over the instances' DICOM JSON: some item of the sequence matches every
    item key. Above the IMAGE level: some instance of the series/study/patient has such an item."""
    keys: tuple[ItemKey, ...] = cond.value  # type: ignore[assignment]
    pred = _sqlite_items(cond.tag, keys) if is_sqlite else _pg_items(cond.tag, keys)
    if level is QueryLevel.IMAGE:
        return pred
    # Correlated to the outer query's own row of the level (SQLAlchemy correlates the outer tables).
    if level is QueryLevel.SERIES:
        inner = select(literal(1)).select_from(I).where(I.c.series_pk == SE.c.pk)
    elif level is QueryLevel.STUDY:
        inner = select(literal(1)).select_from(I.join(SE, SE.c.pk == I.c.series_pk)).where(SE.c.study_pk == ST.c.pk)
    else:
        inner = (
            select(literal(1))
            .select_from(I.join(SE, SE.c.pk == I.c.series_pk).join(ST, ST.c.pk == SE.c.study_pk))
            .where(ST.c.patient_pk == P.c.pk)
        )
    return exists(inner.where(pred))


def _value_path(key: ItemKey) -> str:
    return f'."{key.tag}".Value[0]' + (".Alphabetic" if key.vr == "PN" else "")


def _sqlite_items(tag: str, keys: tuple[ItemKey, ...]) -> ColumnElement[bool]:
    items = func.json_each(I.c.metadata_json, f'$."{tag}".Value').table_valued("value").alias("item")
    clauses = []
    for key in keys:
        value = cast(func.json_extract(items.c.value, "$" + _value_path(key)), String)
        if key.match is Match.WILDCARD:
            pattern, escape = like_pattern(key.value)
            clauses.append(value.like(pattern, escape="\\") if escape else value.like(pattern))
        else:
            clauses.append(value == key.value)
    return exists(select(literal(1)).select_from(items).where(and_(*clauses)))


def _pg_items(tag: str, keys: tuple[ItemKey, ...]) -> ColumnElement[bool]:
    filters = []
    variables: dict[str, Any] = {}
    for n, key in enumerate(keys):
        path = f'@."{key.tag}".Value[*]' + (".Alphabetic" if key.vr == "PN" else "")
        if key.match is Match.WILDCARD:
            regex = "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in key.value) + "$"
            filters.append(f"{path} like_regex {json.dumps(regex)}")
        else:
            variables[f"v{n}"] = _typed(key)
            filters.append(f"{path} == $v{n}")
    jsonpath = f'$."{tag}".Value[*] ? (' + " && ".join(filters) + ")"
    return func.jsonb_path_exists(
        cast(I.c.metadata_json, JSONB), cast(literal(jsonpath), JSONPATH), cast(literal(json.dumps(variables)), JSONB)
    )


def _typed(key: ItemKey) -> Any:
    """DICOM JSON stores IS/DS/US... as numbers: compare numbers with numbers."""
    if key.vr in ("IS", "SL", "SS", "UL", "US", "SV", "UV"):
        try:
            return int(key.value)
        except ValueError:
            return key.value
    if key.vr in ("DS", "FL", "FD"):
        try:
            return float(key.value)
        except ValueError:
            return key.value
    return key.value


class QueryRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def statement(self, query: Query) -> Select[Any]:
        """The SELECT for ``query``: one row per resource of the query level, parents joined."""
        level = query.level
        cols: list[Any] = [P.c.pk.label("p_pk"), P.c.public_id.label("p_id"), P.c.main_tags.label("p_tags"),
                           P.c.num_studies, P.c.num_series.label("p_num_series"),
                           P.c.num_instances.label("p_num_instances")]
        from_: Any = P
        if level >= QueryLevel.STUDY:
            cols += [ST.c.pk.label("st_pk"), ST.c.public_id.label("st_id"), ST.c.main_tags.label("st_tags"),
                     ST.c.num_series.label("st_num_series"), ST.c.num_instances.label("st_num_instances"),
                     ST.c.modalities_in_study]
            from_ = from_.join(ST, ST.c.patient_pk == P.c.pk)
        if level >= QueryLevel.SERIES:
            cols += [SE.c.pk.label("se_pk"), SE.c.public_id.label("se_id"), SE.c.main_tags.label("se_tags"),
                     SE.c.num_instances.label("se_num_instances")]
            from_ = from_.join(SE, SE.c.study_pk == ST.c.pk)
        if level >= QueryLevel.IMAGE:
            cols += [I.c.pk.label("i_pk"), I.c.public_id.label("i_id"), I.c.main_tags.label("i_tags"),
                     I.c.metadata_json, I.c.sop_class_uid, I.c.transfer_syntax_uid]
            from_ = from_.join(I, I.c.series_pk == SE.c.pk)
        stmt = select(*cols).select_from(from_)
        for cond in query.conditions:
            cond_level = cond.level if cond.level is not None else MATCHABLE[cond.keyword][0]
            if cond_level > level:
                continue  # the caller validated levels; keys below the level never filter
            stmt = stmt.where(_condition(cond, query.case_insensitive_names, level, self.db.is_sqlite))
        stmt = stmt.order_by(LEVEL_TABLE[level].c.pk)
        if query.limit is not None:
            stmt = stmt.limit(query.limit)
        if query.offset:
            stmt = stmt.offset(query.offset)
        return stmt

    def search(self, query: Query, *, page: int = 500, first_page: int = 50) -> Iterator[dict[str, Any]]:
        """Stream the matching resources as records (tags merged top-down, counts, metadata).

        Keyset pages of ``page`` rows (``pk > last``, in ``pk`` order): memory stays bounded without a
        server-side cursor, which costs PostgreSQL several round trips (~8 ms) even for one row. The
        first page is small so that the first answer goes out early.
        """
        base = self.statement(Query(query.level, query.conditions, None, 0, query.case_insensitive_names))
        key = LEVEL_TABLE[query.level].c.pk
        key_label = PK_LABEL[query.level]
        remaining = query.limit
        first = True
        last: int | None = None
        with self.db.read() as conn:
            while remaining is None or remaining > 0:
                want = first_page if first else page
                size = want if remaining is None else min(want, remaining)
                stmt = base if last is None else base.where(key > last)
                stmt = stmt.limit(size)
                if first and query.offset:
                    stmt = stmt.offset(query.offset)
                first = False
                rows = conn.execute(stmt).mappings().all()
                for row in rows:
                    yield _record(row, query.level)
                if remaining is not None:
                    remaining -= len(rows)
                if len(rows) < size:
                    return
                last = rows[-1][key_label]

    def count(self, query: Query) -> int:
        stmt = self.statement(Query(query.level, query.conditions, None, 0, query.case_insensitive_names))
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one())

    def sop_classes_in_study(self, study_pk: int) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(I.c.sop_class_uid).join(SE, SE.c.pk == I.c.series_pk)
                .where(SE.c.study_pk == study_pk).distinct().order_by(I.c.sop_class_uid)
            ).scalars()
            return list(rows)


def _record(row: Any, level: QueryLevel) -> dict[str, Any]:
    tags: dict[str, str] = json.loads(row["p_tags"])
    rec: dict[str, Any] = {"patient_pk": row["p_pk"], "patient_id": row["p_id"], "counts": {
        "NumberOfPatientRelatedStudies": row["num_studies"],
        "NumberOfPatientRelatedSeries": row["p_num_series"],
        "NumberOfPatientRelatedInstances": row["p_num_instances"],
    }}
    if level >= QueryLevel.STUDY:
        tags.update(json.loads(row["st_tags"]))
        rec.update(study_pk=row["st_pk"], study_id=row["st_id"])
        rec["counts"].update(
            NumberOfStudyRelatedSeries=row["st_num_series"],
            NumberOfStudyRelatedInstances=row["st_num_instances"],
            ModalitiesInStudy=row["modalities_in_study"] or "",
        )
    if level >= QueryLevel.SERIES:
        tags.update(json.loads(row["se_tags"]))
        rec.update(series_pk=row["se_pk"], series_id=row["se_id"])
        rec["counts"]["NumberOfSeriesRelatedInstances"] = row["se_num_instances"]
    if level >= QueryLevel.IMAGE:
        tags.update(json.loads(row["i_tags"]))
        rec.update(instance_pk=row["i_pk"], instance_id=row["i_id"], metadata=json.loads(row["metadata_json"]))
        tags.setdefault("SOPClassUID", row["sop_class_uid"])
    rec["tags"] = tags
    return rec

