"""erasure requests and the other services' confirmations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 08:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import services.common.sqltypes


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_erasures') as batch:
        batch.add_column(sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
    # Erasures from before: each was its own request.
    op.execute("UPDATE contact_erasures SET request_id = id")
    with op.batch_alter_table('contact_erasures') as batch:
        batch.alter_column('request_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False)
        batch.create_index('ix_contact_erasures_request_id', ['request_id'], unique=False)
    op.create_table('erasure_confirmations',
    sa.Column('erasure_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('service', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('records_erased', sa.BigInteger(), nullable=False),
    sa.Column('completed_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('received_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('erasure_id', 'service')
    )


def downgrade() -> None:
    op.drop_table('erasure_confirmations')
    with op.batch_alter_table('contact_erasures') as batch:
        batch.drop_index('ix_contact_erasures_request_id')
        batch.drop_column('request_id')
