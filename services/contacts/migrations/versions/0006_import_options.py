"""import options: a column mapping and a sheet name for CSV and XLSX imports

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('contact_imports', sa.Column('options', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('contact_imports', 'options')
