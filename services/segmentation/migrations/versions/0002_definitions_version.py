"""definitions_version: the token that invalidates the cached segment definitions and score edges

Revision ID: 0002
Revises: 0001
"""
import uuid

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('definitions_version',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('token', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.bulk_insert(table, [{'name': 'definitions', 'token': str(uuid.uuid4())}])


def downgrade() -> None:
    op.drop_table('definitions_version')
