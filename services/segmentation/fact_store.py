"""The SQL of the order and interaction facts: set-based upserts for a poll, and the indexed
reads the running aggregates fall back on (an extreme whose fact was taken back, complaints in
the window, a whole group's facts after a merge)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, func, literal_column, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.database import BulkStatement, insert_all
from services.common.prepared import PreparedStatement, listed

from .models import InteractionFactRow, OrderFactRow
from .profile_aggregates import COMPLAINT_WINDOW

ORDER_FACTS, INTERACTION_FACTS = OrderFactRow.__table__, InteractionFactRow.__table__
KEYS = {ORDER_FACTS: "order_id", INTERACTION_FACTS: "interaction_id"}
# (insert, update) of whole facts, many rows a poll
WRITES = {table: (BulkStatement(insert_all(table)), BulkStatement(
    update(table).where(table.c[key] == bindparam("k_id")).values(
        {c.name: bindparam(c.name) for c in table.columns if c.name != key})))
    for table, key in KEYS.items()}


def _among(table, column: str, *, for_update: bool = False) -> PreparedStatement:
    """Every column of `table`'s rows whose `column` is in the list "ids", compiled once; on
    PostgreSQL `for_update` locks them."""

    def build(dialect: str):
        query = select(table).where(table.c[column].in_(listed(dialect, "ids")))
        return query.with_for_update() if for_update and dialect == "postgresql" else query
    return PreparedStatement(build)


_STORED = {(table, locked): _among(table, key, for_update=locked) for table, key in KEYS.items()
           for locked in (False, True)}
_OF_CUSTOMERS = {table: _among(table, "customer_id") for table in KEYS}
_COLUMNS = {table: tuple(column.name for column in table.columns) for table in KEYS}


@dataclass(frozen=True)
class FactChange:
    """A fact as stored before the poll (None: new) and as the poll left it."""

    table: Any
    old: dict[str, Any] | None
    new: dict[str, Any]


async def upsert_facts(session: AsyncSession, table, facts: Iterable[dict[str, Any]], *,
                       for_update: bool) -> list[FactChange]:
    """Store each fact's newest version (of those given and the one stored); returns the facts
    that changed. One read of the known ones, one multi-row insert, one batched update."""
    key = KEYS[table]
    newest: dict[str, dict[str, Any]] = {}
    for fact in facts:
        held = newest.get(fact[key])
        if held is None or fact["version"] > held["version"]:
            newest[fact[key]] = fact
    if not newest:
        return []
    columns = _COLUMNS[table]
    stored = {row[key]: row for row in (dict(zip(columns, values)) for values in
                                        await _STORED[(table, for_update)].fetch(session, ids=sorted(newest)))}
    changes = [FactChange(table, stored.get(fact_id), fact) for fact_id, fact in sorted(newest.items())
               if fact_id not in stored or stored[fact_id]["version"] < fact["version"]]
    await WRITES[table][0].execute(session, [change.new for change in changes if change.old is None])
    await WRITES[table][1].execute(session, [{"k_id": change.new[key], **change.new} for change in changes
                                             if change.old is not None])
    return changes


async def facts_of(session: AsyncSession, table, customer_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every fact attributed to these customers (a whole group, for a recompute)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    columns = _COLUMNS[table]
    return [dict(zip(columns, row)) for row in await _OF_CUSTOMERS[table].fetch(session, ids=ids)]


async def _grouped(session: AsyncSession, query: PreparedStatement, customer_ids: Iterable[str],
                   **params) -> list:
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    return await query.fetch(session, ids=ids, **params)


O, I = ORDER_FACTS.c, INTERACTION_FACTS.c
# Constants written into the SQL: a PreparedStatement binds only the parameters it is given.
FEEDBACK, COMPLAINT, CANCELLED = (literal_column(f"'{text}'") for text in ("feedback", "complaint", "cancelled"))


def _complaints_of(dialect: str):
    """The complaints of the customers in "ids". On PostgreSQL the fixed columns go inside the
    semi-join (`(type, kind, customer_id) IN (...)`): `type = ... AND customer_id IN (...)` was
    planned badly in a young database without statistics (docs/architecture.md)."""
    if dialect == "postgresql":
        ids = listed(dialect, "ids").subquery()
        return tuple_(I.type, I.kind, I.customer_id).in_(
            select(FEEDBACK, COMPLAINT, ids.c.value))
    return and_(I.type == FEEDBACK, I.kind == COMPLAINT, I.customer_id.in_(listed(dialect, "ids")))


# The indexed reads behind stale extremes and the complaint window, one shape for any number of
# customers, built and compiled once.
_LIVE_ORDER_SPAN = PreparedStatement(lambda dialect: select(
    O.customer_id, func.min(O.placed_at).label("first"), func.max(O.placed_at).label("last"))
    .where(O.customer_id.in_(listed(dialect, "ids")), O.status != CANCELLED).group_by(O.customer_id))
_LAST_INTERACTION = PreparedStatement(lambda dialect: select(I.customer_id, func.max(I.occurred_at).label("last"))
                                      .where(I.customer_id.in_(listed(dialect, "ids"))).group_by(I.customer_id))
_LAST_COMPLAINT = PreparedStatement(lambda dialect: select(I.customer_id, func.max(I.occurred_at).label("last"))
                                    .where(_complaints_of(dialect)).group_by(I.customer_id))
_NPS_ANSWERS = PreparedStatement(lambda dialect: select(I.customer_id, I.occurred_at, I.interaction_id, I.nps)
                                 .where(I.customer_id.in_(listed(dialect, "ids")), I.nps.is_not(None)))
_COMPLAINTS_SINCE = PreparedStatement(lambda dialect: select(I.customer_id, func.count().label("count"))
                                      .where(_complaints_of(dialect),
                                             I.occurred_at >= bindparam("since", type_=I.occurred_at.type))
                                      .group_by(I.customer_id))


async def extremes(session: AsyncSession, stale: dict[str, set[str]], groups: dict[str, list[str]]) -> dict[str, dict]:
    """Recompute stale extremes from the stored facts: owner -> {record field: value}.

    `stale`: owner -> the extreme names (profile_aggregates.EXTREMES) to recompute; `groups`:
    owner -> the customer ids whose facts count for it."""
    found: dict[str, dict[str, Any]] = {owner: {} for owner in stale}
    wanted = {name for names in stale.values() for name in names}
    member_of = {member: owner for owner in stale for member in groups[owner]}

    def members(*names: str) -> list[str]:
        return [m for m, owner in member_of.items() if stale[owner] & set(names)]

    def fold(field: str, owner: str, value, pick) -> None:
        held = found[owner].get(field)
        found[owner][field] = value if held is None else pick(held, value)

    if wanted & {"first_order_at", "last_order_at"}:
        for customer_id, first, last in await _grouped(session, _LIVE_ORDER_SPAN,
                                                       members("first_order_at", "last_order_at")):
            fold("first_order_at", member_of[customer_id], first, min)
            fold("last_order_at", member_of[customer_id], last, max)
    if "last_interaction_at" in wanted:
        for customer_id, last in await _grouped(session, _LAST_INTERACTION, members("last_interaction_at")):
            fold("last_interaction_at", member_of[customer_id], last, max)
    if "last_complaint_at" in wanted:
        for customer_id, last in await _grouped(session, _LAST_COMPLAINT, members("last_complaint_at")):
            fold("last_complaint_at", member_of[customer_id], last, max)
    if "nps" in wanted:
        for customer_id, at, interaction_id, nps in await _grouped(session, _NPS_ANSWERS, members("nps")):
            fold("nps_key", member_of[customer_id], (at, interaction_id, nps), max)
    out: dict[str, dict[str, Any]] = {}
    for owner, names in stale.items():
        values = {field: found[owner].get(field) for field in ("first_order_at", "last_order_at",
                                                                "last_interaction_at", "last_complaint_at")
                  if field in names}
        if "nps" in names:
            at, interaction_id, nps = found[owner].get("nps_key") or (None, None, None)
            values.update(nps=nps, nps_at=at, nps_interaction_id=interaction_id)
        out[owner] = values
    return out


async def complaints_since(session: AsyncSession, groups: dict[str, list[str]], now: datetime) -> dict[str, int]:
    """Complaints inside the window per owner (owner -> the ids whose facts count for it): an
    index range over each customer's recent interactions, not their whole history."""
    member_of = {member: owner for owner, ids in groups.items() for member in ids}
    counts = {owner: 0 for owner in groups}
    for customer_id, count in await _grouped(session, _COMPLAINTS_SINCE, member_of, since=now - COMPLAINT_WINDOW):
        counts[member_of[customer_id]] += count
    return counts
