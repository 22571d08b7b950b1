"""outbound webhooks: subscriptions, their delivery queue and log, segment membership

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 11:40:00
"""
from alembic import op
import sqlalchemy as sa
import services.common.sqltypes


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_subscriptions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=True),
    sa.Column('segment_id', sa.String(length=36), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('disabled_reason', sa.String(length=500), nullable=True),
    sa.Column('failing_since', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_subscriptions_created', 'webhook_subscriptions', ['created_at', 'id'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('position', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('subscription_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('customer_key', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('first_attempt_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('position'),
    sa.UniqueConstraint('id'),
    sa.UniqueConstraint('subscription_id', 'event_id', name='uq_webhook_deliveries_event')
    )
    op.create_index('ix_webhook_deliveries_queue', 'webhook_deliveries',
                    ['subscription_id', 'customer_key', 'status', 'position'], unique=False)
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_webhook_deliveries_log', 'webhook_deliveries', ['subscription_id', 'position'], unique=False)
    op.create_table('webhook_segment_members',
    sa.Column('segment_id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('member', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('segment_id', 'customer_id')
    )


def downgrade() -> None:
    op.drop_table('webhook_segment_members')
    op.drop_index('ix_webhook_deliveries_log', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_queue', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_webhook_subscriptions_created', table_name='webhook_subscriptions')
    op.drop_table('webhook_subscriptions')
