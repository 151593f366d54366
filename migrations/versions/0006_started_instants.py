"""studies.started_at, scheduled_steps.started_at: the start as a UTC instant, indexed for FHIR ``started``

The FHIR ImagingStudy ``started`` search and ``_sort=started`` compare instants (R4 search.html#date). The DA/TM
columns are in the zone the study or order was recorded in (Timezone Offset From UTC (0008,0201), else the hub's
zone), so the instant is kept beside them. Existing rows are filled here: a stored study's offset is its first
instance's, an order's is in its request attributes; rows without an offset take this machine's zone, the hub's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00
"""

import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from mappings.dicom_to_fhir_values import dicom_utc, offset_of

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
OFFSET_KEY = '%"00080201"%'  # DICOM JSON (PS3.18 F.2) text holding a Timezone Offset From UTC


def upgrade() -> None:
    for table in ('studies', 'scheduled_steps'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('started_at', sa.DateTime(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_started_at'), ['started_at'], unique=False)
    conn = op.get_bind()
    _fill(conn, 'studies', _study_rows(conn))
    _fill(conn, 'scheduled_steps', _step_rows(conn))


def _study_rows(conn: sa.Connection) -> Iterator[tuple[int, Any, Any, str]]:
    first = ('SELECT min(i.pk) FROM instances i JOIN series s ON s.pk = i.series_pk GROUP BY s.study_pk')
    offsets = {pk: offset_of(json.loads(text or '{}')) for pk, text in conn.execute(sa.text(
        'SELECT s.study_pk, i.metadata_json FROM instances i JOIN series s ON s.pk = i.series_pk '
        f'WHERE i.pk IN ({first}) AND i.metadata_json LIKE :key'), {'key': OFFSET_KEY})}
    for pk, da, tm in _pages(conn, 'SELECT pk, study_date, study_time FROM studies WHERE study_date IS NOT NULL'):
        yield pk, da, tm, offsets.get(pk, '')


def _step_rows(conn: sa.Connection) -> Iterator[tuple[int, Any, Any, str]]:
    offsets = {pk: offset_of(json.loads(text or '{}')) for pk, text in conn.execute(sa.text(
        'SELECT pk, attrs FROM orders WHERE attrs LIKE :key'), {'key': OFFSET_KEY})}
    for pk, order_pk, da, tm in _pages(conn, 'SELECT pk, order_pk, start_date, start_time FROM scheduled_steps '
                                             'WHERE start_date IS NOT NULL'):
        yield pk, da, tm, offsets.get(order_pk, '')


def _pages(conn: sa.Connection, query: str) -> Iterator[Sequence[Any]]:
    """The rows of ``query`` (its WHERE clause, no ORDER BY) in pk order, one page in memory at a time."""
    last = 0
    while True:
        rows = conn.execute(sa.text(f'{query} AND pk > :last ORDER BY pk LIMIT {BATCH}'), {'last': last}).all()
        yield from rows
        if len(rows) < BATCH:
            return
        last = rows[-1][0]


def _fill(conn: sa.Connection, table: str, rows: Iterator[tuple[int, Any, Any, str]]) -> None:
    update = sa.text(f'UPDATE {table} SET started_at = :at WHERE pk = :pk')
    batch: list[dict[str, Any]] = []
    for pk, da, tm, offset in rows:
        at = dicom_utc(da, tm, offset)
        if at is not None:
            batch.append({'pk': pk, 'at': at})
        if len(batch) >= BATCH:
            conn.execute(update, batch)
            batch = []
    if batch:
        conn.execute(update, batch)


def downgrade() -> None:
    for table in ('scheduled_steps', 'studies'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_started_at'))
            batch_op.drop_column('started_at')
