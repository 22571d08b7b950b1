"""running aggregates: the totals behind avg_rating and nps, per-value order counts, fact indexes by time

Profiles move by their facts' differences now (profile_aggregates.py), so they keep the totals
those need: rating_sum / rating_count (avg_rating), the time and id of the latest NPS answer,
and for categories and SKUs how many live orders carry each value. Existing profiles get them
from their facts here, following merges as the projection does.

Revision ID: 0003
Revises: 0002
"""
from collections import defaultdict

from alembic import op
import sqlalchemy as sa
import sqlmodel

from services.common.sqltypes import UtcDateTime

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

MAX_HOPS = 32


def upgrade() -> None:
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rating_sum', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('rating_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('nps_at', UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column('nps_interaction_id', sqlmodel.sql.sqltypes.AutoString(length=36),
                                      nullable=True))
    with op.batch_alter_table('profile_values', schema=None) as batch_op:
        batch_op.add_column(sa.Column('count', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('order_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_order_facts_customer')
        batch_op.create_index('ix_order_facts_customer_placed', ['customer_id', 'placed_at'], unique=False)
    with op.batch_alter_table('interaction_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_facts_customer')
        batch_op.create_index('ix_interaction_facts_customer_occurred', ['customer_id', 'occurred_at'],
                              unique=False)
    _backfill(op.get_bind())


def _backfill(connection) -> None:
    aliases = sa.table('customer_aliases', sa.column('contact_id'), sa.column('survivor_id'))
    interactions = sa.table('interaction_facts', sa.column('customer_id'), sa.column('occurred_at', UtcDateTime()),
                            sa.column('interaction_id'), sa.column('rating'), sa.column('nps'))
    orders = sa.table('order_facts', sa.column('customer_id'), sa.column('status'), sa.column('lines', sa.JSON()))
    profiles = sa.table('profiles', sa.column('customer_id'), sa.column('rating_sum'), sa.column('rating_count'),
                        sa.column('nps_at', UtcDateTime()), sa.column('nps_interaction_id'))
    values = sa.table('profile_values', sa.column('customer_id'), sa.column('field'), sa.column('value'),
                      sa.column('count'))
    survivor_of = dict(connection.execute(sa.select(aliases.c.contact_id, aliases.c.survivor_id)).all())

    def owner(customer_id: str) -> str:
        current = customer_id
        for _ in range(MAX_HOPS):
            nxt = survivor_of.get(current)
            if nxt is None or nxt == customer_id:
                break
            current = nxt
        return current

    ratings: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    latest: dict[str, tuple] = {}
    for row in connection.execute(sa.select(interactions).where(
            interactions.c.customer_id.is_not(None),
            interactions.c.rating.is_not(None) | interactions.c.nps.is_not(None))):
        who = owner(row.customer_id)
        if row.rating is not None:
            ratings[who][0] += row.rating
            ratings[who][1] += 1
        if row.nps is not None and (who not in latest or (row.occurred_at, row.interaction_id) > latest[who]):
            latest[who] = (row.occurred_at, row.interaction_id)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in connection.execute(sa.select(orders).where(orders.c.customer_id.is_not(None),
                                                           orders.c.status != 'cancelled')):
        who = owner(row.customer_id)
        for field, key in (('categories', 'category'), ('skus', 'sku')):
            for value in {line.get(key) for line in row.lines or [] if isinstance(line, dict) and line.get(key)}:
                counts[(who, field, value)] += 1
    updates = [{'k': who, 's': ratings[who][0] if who in ratings else 0, 'n': ratings[who][1] if who in ratings else 0,
                'at': latest.get(who, (None, None))[0], 'id': latest.get(who, (None, None))[1]}
               for who in set(ratings) | set(latest)]
    if updates:
        connection.execute(profiles.update().where(profiles.c.customer_id == sa.bindparam('k')).values(
            rating_sum=sa.bindparam('s'), rating_count=sa.bindparam('n'), nps_at=sa.bindparam('at'),
            nps_interaction_id=sa.bindparam('id')), updates)
    if counts:
        connection.execute(values.update().where(
            values.c.customer_id == sa.bindparam('k'), values.c.field == sa.bindparam('f'),
            values.c.value == sa.bindparam('v')).values(count=sa.bindparam('n')),
            [{'k': k, 'f': f, 'v': v, 'n': n} for (k, f, v), n in counts.items()])


def downgrade() -> None:
    with op.batch_alter_table('interaction_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_facts_customer_occurred')
        batch_op.create_index('ix_interaction_facts_customer', ['customer_id'], unique=False)
    with op.batch_alter_table('order_facts', schema=None) as batch_op:
        batch_op.drop_index('ix_order_facts_customer_placed')
        batch_op.create_index('ix_order_facts_customer', ['customer_id'], unique=False)
    with op.batch_alter_table('profile_values', schema=None) as batch_op:
        batch_op.drop_column('count')
    with op.batch_alter_table('profiles', schema=None) as batch_op:
        batch_op.drop_column('nps_interaction_id')
        batch_op.drop_column('nps_at')
        batch_op.drop_column('rating_count')
        batch_op.drop_column('rating_sum')
