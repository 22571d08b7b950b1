"""Persistence of profile records: one `profiles` row plus its child rows, read and written as
one plain dict (the record), which is also what the predicate, the API and the events see.

Record shape: every `profiles` column by name, plus `money` ({currency: {total_spent,
order_count, avg_order_value, clv}}), `tags` / `categories` / `skus` (sorted lists) and
`interactions_by_type` / `interactions_by_channel` ({key: count}).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.events import rfc3339

from .fields import LIST_FIELDS
from .models import CONSENT_CHANNELS, ProfileCounterRow, ProfileMoneyRow, ProfileRow, ProfileValueRow

P, M, V, C = (ProfileRow.__table__, ProfileMoneyRow.__table__, ProfileValueRow.__table__,
              ProfileCounterRow.__table__)
COLUMNS = tuple(column.name for column in P.columns)
MONEY_FIELDS = ("total_spent", "order_count", "avg_order_value", "clv")
COUNTER_FIELDS = {"type": "interactions_by_type", "channel": "interactions_by_channel"}
CHUNK = 500
ZERO_COLUMNS = ("order_count", "refund_count", "cancelled_count", "interaction_count", "open_tickets",
                "complaints_90d", "campaign_opens", "campaign_clicks", "campaign_conversions")


def empty_record(customer_id: str) -> dict[str, Any]:
    record = {column.name: None for column in P.columns}
    record.update({name: 0 for name in ZERO_COLUMNS}, **{f"consent_{c}": False for c in CONSENT_CHANNELS})
    record.update(customer_id=customer_id, status="active", version=0, contact_version=0, money={},
                  interactions_by_type={}, interactions_by_channel={}, **{name: [] for name in LIST_FIELDS})
    return record


async def load_records(session: AsyncSession, customer_ids: Iterable[str], *,
                       for_update: bool = False) -> dict[str, dict[str, Any]]:
    ids = sorted(set(customer_ids))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        query = select(P).where(P.c.customer_id.in_(chunk))
        if for_update and session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        for row in (await session.execute(query)).mappings():
            record = dict(row)
            record.update(money={}, interactions_by_type={}, interactions_by_channel={},
                          **{name: [] for name in LIST_FIELDS})
            out[record["customer_id"]] = record
        for row in (await session.execute(select(M).where(M.c.customer_id.in_(chunk)))).mappings():
            out[row["customer_id"]]["money"][row["currency"]] = {name: row[name] for name in MONEY_FIELDS}
        for row in (await session.execute(select(V).where(V.c.customer_id.in_(chunk))
                                          .order_by(V.c.value))).mappings():
            out[row["customer_id"]][row["field"]].append(row["value"])
        for row in (await session.execute(select(C).where(C.c.customer_id.in_(chunk)))).mappings():
            out[row["customer_id"]][COUNTER_FIELDS[row["dimension"]]][row["key"]] = row["count"]
    return out


async def load_record(session: AsyncSession, customer_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    return (await load_records(session, [customer_id], for_update=for_update)).get(customer_id)


async def save_records(session: AsyncSession, records: list[dict[str, Any]], *, existing: set[str]) -> None:
    """Write records whole: the row (insert or update) and its children (replaced)."""
    if not records:
        return
    ids = [r["customer_id"] for r in records]
    rows = [{name: r.get(name) for name in COLUMNS} for r in records]
    new = [row for row in rows if row["customer_id"] not in existing]
    old = [row for row in rows if row["customer_id"] in existing]
    if new:
        await session.execute(insert(P), new)
    for row in old:
        await session.execute(update(P).where(P.c.customer_id == row["customer_id"]).values(**row))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        for table in (M, V, C):
            await session.execute(delete(table).where(table.c.customer_id.in_(chunk)))
    money = [{"customer_id": r["customer_id"], "currency": cur, **values}
             for r in records for cur, values in r["money"].items()]
    values = [{"customer_id": r["customer_id"], "field": name, "value": value}
              for r in records for name in LIST_FIELDS for value in r[name]]
    counters = [{"customer_id": r["customer_id"], "dimension": dim, "key": key, "count": count}
                for r in records for dim, name in COUNTER_FIELDS.items() for key, count in r[name].items()]
    for table, items in ((M, money), (V, values), (C, counters)):
        if items:
            await session.execute(insert(table), items)


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as JSON: times in RFC 3339, money as decimal strings."""
    return {key: _json(value) for key, value in record.items()}


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(item) for item in value]
    return value
