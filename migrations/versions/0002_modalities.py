"""modalities declared at run time (Orthanc PUT /modalities/{name})

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:58:08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('modalities',
    sa.Column('pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('removed', sa.Boolean(), nullable=False),
    sa.Column('aet', sa.String(length=16), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('manufacturer', sa.String(length=32), nullable=False),
    sa.Column('allow_echo', sa.Boolean(), nullable=False),
    sa.Column('allow_find', sa.Boolean(), nullable=False),
    sa.Column('allow_find_worklist', sa.Boolean(), nullable=False),
    sa.Column('allow_move', sa.Boolean(), nullable=False),
    sa.Column('allow_get', sa.Boolean(), nullable=False),
    sa.Column('allow_store', sa.Boolean(), nullable=False),
    sa.Column('allow_n_action', sa.Boolean(), nullable=False),
    sa.Column('allow_event_report', sa.Boolean(), nullable=False),
    sa.Column('allow_transcoding', sa.Boolean(), nullable=False),
    sa.Column('local_aet', sa.String(length=16), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('use_dicom_tls', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('pk', name=op.f('pk_modalities')),
    sa.UniqueConstraint('name', name=op.f('uq_modalities_name'))
    )


def downgrade() -> None:
    op.drop_table('modalities')
