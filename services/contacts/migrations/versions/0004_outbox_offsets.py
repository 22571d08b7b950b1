"""outbox_offsets: an offset the broker acknowledged per partition, so the relay notices a
broker that lost what it acknowledged and re-sends (services/common/relay.py)

Revision ID: 0004
Revises: 0003
"""
from alembic import op

from services.common.kernel_tables import create_outbox_offsets

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_offsets(op)


def downgrade() -> None:
    op.drop_table('outbox_offsets')
