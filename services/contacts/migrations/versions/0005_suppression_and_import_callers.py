"""the suppression list of erased identities; who uploaded each import

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 23:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import services.common.sqltypes


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suppressed_identities',
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('erasure_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('suppressed_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('digest')
    )
    with op.batch_alter_table('contact_imports') as batch:
        batch.add_column(sa.Column('caller_key_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch.add_column(sa.Column('caller_key_name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch.add_column(sa.Column('caller_request_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact_imports') as batch:
        batch.drop_column('caller_request_id')
        batch.drop_column('caller_key_name')
        batch.drop_column('caller_key_id')
    op.drop_table('suppressed_identities')
