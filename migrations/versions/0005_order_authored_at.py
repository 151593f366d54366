"""orders.authored_at: ServiceRequest.authoredOn as an instant (UTC), indexed for the ``authored`` search

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authored_at', sa.DateTime(), nullable=True))
    # Existing orders: their receipt time (what authoredOn showed until now).
    op.execute(sa.text('UPDATE orders SET authored_at = created_at WHERE authored_at IS NULL'))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.alter_column('authored_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.create_index(batch_op.f('ix_orders_authored_at'), ['authored_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_authored_at'))
        batch_op.drop_column('authored_at')
