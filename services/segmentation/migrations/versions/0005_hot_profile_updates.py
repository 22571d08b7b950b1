"""hot profile updates: the indexes no query uses, or on columns that move with every order or
interaction, go; profiles and the counted child rows leave room in each page

On PostgreSQL an UPDATE that changes no indexed column, and finds room in the row's page, is a
HOT update: it writes no index entry. The projection updates a profile with nearly every event,
and each of these indexes held a column that moves with it (order_count, last_order_at,
last_interaction_at, rfm_segment; a counter's count, a currency's total_spent), so every update
wrote a new entry into each of the table's indexes. Rules on those columns scan `profiles`
instead (rule_sql.py: a full evaluation, or a filtered list); the child tables' rules are
correlated look-ups by their primary keys, which no dropped index served. The fillfactor applies
to pages written from now on (a VACUUM FULL rewrites the existing ones); SQLite has no such
storage parameter.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

DROPPED = (
    ('profiles', 'ix_profiles_last_order', ['last_order_at']),
    ('profiles', 'ix_profiles_order_count', ['order_count']),
    ('profiles', 'ix_profiles_last_interaction', ['last_interaction_at']),
    ('profiles', 'ix_profiles_rfm_segment', ['rfm_segment']),
    ('profile_counters', 'ix_profile_counters_lookup', ['dimension', 'key', 'count']),
    ('profile_money', 'ix_profile_money_currency_total', ['currency', 'total_spent']),
)
FILLFACTOR = {'profiles': 85, 'profile_counters': 90, 'profile_money': 90, 'profile_values': 90}


def upgrade() -> None:
    for table, name, _columns in DROPPED:
        op.drop_index(name, table_name=table)
    if op.get_bind().dialect.name == 'postgresql':
        for table, percent in FILLFACTOR.items():
            op.execute(f'ALTER TABLE {table} SET (fillfactor = {percent})')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in FILLFACTOR:
            op.execute(f'ALTER TABLE {table} RESET (fillfactor)')
    for table, name, columns in DROPPED:
        op.create_index(name, table, columns, unique=False)
