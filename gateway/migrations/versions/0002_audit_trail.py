"""audit trail

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-10 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import services.common.sqltypes


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('service', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('key_name', sa.String(length=200), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('resource', sa.String(length=200), nullable=True),
    sa.Column('customer_ids', sa.JSON(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('recorded_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_entries_at', 'audit_entries', ['at', 'id'], unique=False)
    op.create_index('ix_audit_entries_key', 'audit_entries', ['key_id', 'at', 'id'], unique=False)
    op.create_index('ix_audit_entries_action', 'audit_entries', ['action', 'at', 'id'], unique=False)
    op.create_table('audit_entry_customers',
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('entry_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('customer_id', 'at', 'entry_id')
    )


def downgrade() -> None:
    op.drop_table('audit_entry_customers')
    op.drop_index('ix_audit_entries_action', table_name='audit_entries')
    op.drop_index('ix_audit_entries_key', table_name='audit_entries')
    op.drop_index('ix_audit_entries_at', table_name='audit_entries')
    op.drop_table('audit_entries')
