"""Persistence of profile records: one `profiles` row plus its child rows, read and written as
one plain dict (the record), which is also what the predicate, the API and the events see.

Record shape: every `profiles` column by name, plus `money` ({currency: {total_spent,
order_count, avg_order_value, clv}}), `tags` / `categories` / `skus` (sorted lists),
`value_counts` ({"categories" | "skus": {value: live orders with it}}) and
`interactions_by_type` / `interactions_by_channel` ({key: count}). The running aggregates that
only the projection needs (INTERNAL) are left out of what the API and the events show.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any, Iterable

import orjson
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import BulkStatement, insert_all
from services.common.events import encode
from services.common.prepared import PreparedStatement, listed

from .fields import LIST_FIELDS
from .models import CONSENT_CHANNELS, ProfileCounterRow, ProfileMoneyRow, ProfileRow, ProfileValueRow

P, M, V, C = (ProfileRow.__table__, ProfileMoneyRow.__table__, ProfileValueRow.__table__,
              ProfileCounterRow.__table__)
COLUMNS = tuple(column.name for column in P.columns)
MONEY_FIELDS = ("total_spent", "order_count", "avg_order_value", "clv")
COUNTER_FIELDS = {"type": "interactions_by_type", "channel": "interactions_by_channel"}
ZERO_COLUMNS = ("order_count", "refund_count", "cancelled_count", "interaction_count", "open_tickets",
                "complaints_90d", "campaign_opens", "campaign_clicks", "campaign_conversions", "rating_sum",
                "rating_count")
COUNTED_VALUES = ("categories", "skus")  # list fields whose values carry a count (profile_aggregates)
INTERNAL = frozenset(("rating_sum", "rating_count", "nps_at", "nps_interaction_id", "value_counts"))


_EMPTY = {name: None for name in COLUMNS} | {name: 0 for name in ZERO_COLUMNS} | {
    f"consent_{c}": False for c in CONSENT_CHANNELS} | {"status": "active", "version": 0, "contact_version": 0}


def empty_record(customer_id: str) -> dict[str, Any]:
    return {**_EMPTY, "customer_id": customer_id, "money": {}, "interactions_by_type": {},
            "interactions_by_channel": {}, **{name: [] for name in LIST_FIELDS},
            "value_counts": {name: {} for name in COUNTED_VALUES}}


def _by_customer(columns, table, *, order_by=None, for_update: bool = False) -> PreparedStatement:
    """`columns` of `table`'s rows of a list of customers ("ids"): one shape whatever the poll
    holds, built and compiled once (a small poll paid more for building its statements through
    SQLAlchemy than the database spent running them). On PostgreSQL `for_update` locks the rows."""

    def build(dialect: str):
        query = select(*columns).where(table.c.customer_id.in_(listed(dialect, "ids")))
        if order_by is not None:
            query = query.order_by(order_by)
        return query.with_for_update() if for_update and dialect == "postgresql" else query
    return PreparedStatement(build)


_PROFILES = {locked: _by_customer(P.columns, P, for_update=locked) for locked in (False, True)}
# The child rows' columns in the order load_records unpacks them.
_MONEY_ROWS = _by_customer((M.c.customer_id, M.c.currency, *(M.c[name] for name in MONEY_FIELDS)), M)
_VALUE_ROWS = _by_customer((V.c.customer_id, V.c.field, V.c.value, V.c.count), V, order_by=V.c.value)
_COUNTER_ROWS = _by_customer((C.c.customer_id, C.c.dimension, C.c.key, C.c.count), C)
_CONTACT_VERSIONS = _by_customer((P.c.customer_id, P.c.contact_version), P)


async def load_records(session: AsyncSession, customer_ids: Iterable[str], *,
                       for_update: bool = False) -> dict[str, dict[str, Any]]:
    ids = sorted(set(customer_ids))
    out: dict[str, dict[str, Any]] = {}
    if not ids:
        return out
    # Rows as tuples, not mappings: a poll loads hundreds of profiles of some 60 columns.
    for row in await _PROFILES[for_update].fetch(session, ids=ids):
        record = dict(zip(COLUMNS, row))
        record.update(money={}, interactions_by_type={}, interactions_by_channel={},
                      **{name: [] for name in LIST_FIELDS}, value_counts={name: {} for name in COUNTED_VALUES})
        out[record["customer_id"]] = record
    # Under READ COMMITTED each statement sees the latest commits: a profile created after the
    # first query can already have child rows here; they belong to no record read, so skip them.
    loaded = [cid for cid in ids if cid in out]
    if loaded:
        for customer_id, currency, *values in await _MONEY_ROWS.fetch(session, ids=loaded):
            out[customer_id]["money"][currency] = dict(zip(MONEY_FIELDS, values))
        for customer_id, name, value, count in await _VALUE_ROWS.fetch(session, ids=loaded):
            record = out[customer_id]
            record[name].append(value)
            if name in COUNTED_VALUES:
                record["value_counts"][name][value] = count
        for customer_id, dimension, key, count in await _COUNTER_ROWS.fetch(session, ids=loaded):
            out[customer_id][COUNTER_FIELDS[dimension]][key] = count
    return out


async def contact_versions(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, int]:
    """The contact version each existing profile holds (what a contact snapshot must beat)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    return {customer_id: version for customer_id, version in await _CONTACT_VERSIONS.fetch(session, ids=ids)}


async def load_record(session: AsyncSession, customer_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    return (await load_records(session, [customer_id], for_update=for_update)).get(customer_id)


def _children(record: dict[str, Any], tables) -> dict[Any, dict[tuple, dict[str, Any]]]:
    """The record's child rows of these tables, per table, by primary key (without customer_id)."""
    cid, out = record["customer_id"], {}
    if M in tables:
        out[M] = {(cur,): {"customer_id": cid, "currency": cur, **{n: v[n] for n in MONEY_FIELDS}}
                  for cur, v in record["money"].items()}
    if V in tables:
        out[V] = {(name, value): {"customer_id": cid, "field": name, "value": value,
                                  "count": record["value_counts"][name].get(value, 1) if name in COUNTED_VALUES else 1}
                  for name in LIST_FIELDS for value in record[name]}
    if C in tables:
        out[C] = {(dim, key): {"customer_id": cid, "dimension": dim, "key": key, "count": count}
                  for dim, name in COUNTER_FIELDS.items() for key, count in record[name].items()}
    return out


# The record fields each child table holds, as getters (compared as tuples, in C).
CHILD_FIELDS = {table: itemgetter(*names, "customer_id") for table, names in (
    (M, ("money",)), (V, (*LIST_FIELDS, "value_counts")), (C, tuple(COUNTER_FIELDS.values())))}


def _upsert_child(table, dialect_name: str) -> BulkStatement:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE of a child row, bound by column name.

    One statement for new and changed rows, and the conflict is found through the primary key
    (the arbiter index) rather than by a plan: an UPDATE by primary key was planned, in a young
    PostgreSQL database, through a rule index on the same columns, scanning every row of a value."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert_of = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert_of(table).values({column.name: bindparam(column.name) for column in table.columns})
    return BulkStatement(statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={column.name: statement.excluded[column.name] for column in table.columns
              if not column.primary_key}))


def _update_profile(names: Iterable[str]) -> BulkStatement:
    return BulkStatement(update(P).where(P.c.customer_id == bindparam("customer_id")).values(
        {name: bindparam(name) for name in names}))


# What an order or an interaction moves: the aggregates, the scores and the bookkeeping. A stored
# profile whose other columns (status, merged_into and the contact's 21) are as it had them is
# updated through these alone: most updates of a poll, half the values to bind and, on SQLite,
# which updates only the indexes of the columns it sets, no index at all (none holds one of these:
# models.py). Each row is still updated by one statement (on PostgreSQL each UPDATE of a row
# writes a new version of it, HOT when no indexed column moved and its page has room).
AGGREGATE_COLUMNS = (
    "order_count", "first_order_at", "last_order_at", "refund_count", "cancelled_count", "primary_currency",
    "interaction_count", "last_interaction_at", "avg_rating", "nps", "rating_sum", "rating_count", "nps_at",
    "nps_interaction_id", "open_tickets", "complaints_90d", "last_complaint_at", "campaign_opens", "campaign_clicks",
    "campaign_conversions", "rfm_recency", "rfm_frequency", "rfm_monetary", "rfm_segment", "churn_risk",
    "version", "updated_from_events_at", "created_at", "updated_at")
_OTHER_COLUMNS = itemgetter(*(name for name in COLUMNS if name not in AGGREGATE_COLUMNS))
_INSERT_PROFILE = BulkStatement(insert_all(P))
_UPDATE_PROFILE = _update_profile(name for name in COLUMNS if name != "customer_id")
_UPDATE_AGGREGATES = _update_profile(AGGREGATE_COLUMNS)
_DELETE_CHILD = {table: BulkStatement(delete(table).where(
    *(column == bindparam(column.name) for column in table.primary_key.columns))) for table in (M, V, C)}
_UPSERT_CHILD = {(table, name): _upsert_child(table, name) for table in (M, V, C) for name in ("sqlite", "postgresql")}


async def save_records(session: AsyncSession, records: list[dict[str, Any]], *,
                       stored: dict[str, dict[str, Any]]) -> None:
    """Write records whole: the row and its child rows, each kind of statement once for all.

    `stored` holds the stored version of each record that has a row (as load_records read it, in
    this transaction, its profile locked): such a row is updated (through AGGREGATE_COLUMNS
    alone when the other columns are as stored) and only its differing child rows are deleted or
    upserted. Any other record is inserted with all its child rows: it has none yet, since a
    child row needs its profile (the foreign key) and profiles are never deleted."""
    if not records:
        return
    # Records hold every column by name (empty_record, load_records): they are the rows.
    await _INSERT_PROFILE.execute(session, [r for r in records if r["customer_id"] not in stored])
    whole, aggregates = [], []
    for record in records:
        old = stored.get(record["customer_id"])
        if old is not None:
            (aggregates if _OTHER_COLUMNS(old) == _OTHER_COLUMNS(record) else whole).append(record)
    await _UPDATE_PROFILE.execute(session, whole)
    await _UPDATE_AGGREGATES.execute(session, aggregates)
    upserts: dict[Any, list] = {M: [], V: [], C: []}
    deletes: dict[Any, list] = {M: [], V: [], C: []}
    for record in records:
        old = stored.get(record["customer_id"])
        tables = [t for t, fields in CHILD_FIELDS.items() if old is None or fields(old) != fields(record)]
        if not tables:
            continue  # the usual case for a contact update: no child row moved
        now_rows = _children(record, tables)
        before = _children(old, tables) if old is not None else None
        for table, wanted in now_rows.items():
            had = before[table] if before is not None else {}
            deletes[table].extend(row for key, row in had.items() if key not in wanted)
            upserts[table].extend(row for key, row in wanted.items() if had.get(key) != row)
    dialect = session.bind.dialect.name
    for table in (M, V, C):
        await _DELETE_CHILD[table].execute(session, deletes[table])
        await _UPSERT_CHILD[(table, dialect)].execute(session, upserts[table])


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The record without INTERNAL, as it is: what crm.profile.updated.v1 carries (events.encode
    writes its times, dates and amounts exactly as `public` does)."""
    return {key: value for key, value in record.items() if key not in INTERNAL}


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON: times in RFC 3339, money as decimal strings, INTERNAL left out."""
    return orjson.loads(encode(view(record)))
