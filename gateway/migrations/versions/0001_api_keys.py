"""api keys

Revision ID: 0001
Revises:
Create Date: 2026-12-01 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import services.common.sqltypes


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('rate_per_second', sa.Float(), nullable=True),
    sa.Column('rate_burst', sa.Integer(), nullable=True),
    sa.Column('created_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prefix')
    )


def downgrade() -> None:
    op.drop_table('api_keys')
