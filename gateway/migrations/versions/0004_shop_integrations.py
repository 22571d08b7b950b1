"""shop integrations: shops, handled webhook deliveries, dead letters

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:45:00
"""
from alembic import op
import sqlalchemy as sa
import services.common.sqltypes


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shops',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('order_platform', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.String(length=255), nullable=False),
    sa.Column('prices_in_tomans', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('order_platform'),
    sa.UniqueConstraint('platform', 'domain', name='uq_shops_platform_domain')
    )
    op.create_table('shop_webhook_deliveries',
    sa.Column('shop_id', sa.String(length=36), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('received_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('shop_id', 'delivery_id')
    )
    op.create_table('shop_dead_letters',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('shop_id', sa.String(length=36), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=True),
    sa.Column('received_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('problem', sa.JSON(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('resolved_at', services.common.sqltypes.UtcDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_shop_dead_letters_received', 'shop_dead_letters', ['received_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_shop_dead_letters_received', table_name='shop_dead_letters')
    op.drop_table('shop_dead_letters')
    op.drop_table('shop_webhook_deliveries')
    op.drop_table('shops')
