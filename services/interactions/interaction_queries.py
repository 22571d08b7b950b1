"""Reads: one interaction, a customer's timeline and the filtered list, newest first, with an
opaque keyset cursor (occurred_at, id), so page 500 costs what page 1 costs.

The timeline of a customer merged into another redirects (307) to the survivor's, where its
interactions now are, as the contacts service does for the contact itself.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import InvalidInput, Redirect
from services.common.pagination import decode_cursor, encode_cursor
from services.common.service_app import ServiceContext

from . import interaction_store as store
from .attribution import load_states
from .models import interactions
from .schemas import InteractionPublic


@dataclass(frozen=True)
class InteractionFilter:
    type: list[str] | None = None
    channel: list[str] | None = None
    occurred_after: datetime | None = None  # inclusive
    occurred_before: datetime | None = None  # exclusive
    campaign_id: str | None = None
    agent: str | None = None
    status: str | None = None
    customer_id: str | None = None

    def conditions(self, *, pin_index: bool = False) -> list[Any]:
        """The filters as SQL. With `pin_index` (SQLite), one indexed filter drives the query
        (the most selective given: customer, campaign, agent, type; each has an (x, occurred_at,
        id) index that also gives the order) and the others are written so that no index applies
        to them: SQLite, without statistics, may otherwise walk the type index over every
        customer's page views to find one customer's. PostgreSQL's planner has statistics and
        chooses well by itself (and misestimates the rewritten expressions)."""
        equalities = [(interactions.c.customer_id, self.customer_id), (interactions.c.campaign_id, self.campaign_id),
                      (interactions.c.agent, self.agent)]
        driver = next((column for column, value in equalities if value is not None), None)
        if driver is None and self.type:
            driver = interactions.c.type
        if not pin_index:
            driver = _ALL
        out: list[Any] = []
        for column, value in equalities:
            if value is not None:
                out.append(_as_driven(column, driver) == value)
        if self.type:
            out.append(_as_driven(interactions.c.type, driver).in_(self.type))
        if self.channel:
            out.append(interactions.c.channel.in_(self.channel))
        if self.status is not None:
            out.append(interactions.c.status == self.status)
        for name, bound in (("occurred_after", self.occurred_after), ("occurred_before", self.occurred_before)):
            if bound is not None and bound.tzinfo is None:
                raise InvalidInput.field(["query", name], "must carry a timezone (RFC 3339), e.g. 2026-01-31T10:00:00Z")
        if self.occurred_after is not None:
            out.append(interactions.c.occurred_at >= self.occurred_after)
        if self.occurred_before is not None:
            out.append(interactions.c.occurred_at < self.occurred_before)
        return out


_ALL = object()  # no pinning: every column as itself


def _as_driven(column, driver) -> Any:
    """The column itself if it drives the query, else `column || ''`: the same value, but an
    expression no index matches."""
    return column if driver is _ALL or column is driver else column.concat("")


async def get_interaction(ctx: ServiceContext, interaction_id: str) -> InteractionPublic:
    async with ctx.read_session_factory() as session:
        return await store.load(session, interaction_id)


def _after_cursor(cursor: str) -> Any:
    last_at, last_id = decode_cursor(cursor, expected_length=2)
    try:
        last_at = datetime.fromisoformat(last_at)
    except (TypeError, ValueError):
        raise InvalidInput.field(["query", "cursor"], "is not a cursor this list gave out") from None
    # A row-value comparison: both backends turn it into one range over the (…, occurred_at, id) index.
    return tuple_(interactions.c.occurred_at, interactions.c.id) < tuple_(last_at, last_id)


async def _page(session: AsyncSession, f: InteractionFilter, *, limit: int,
                cursor: str | None) -> tuple[list[InteractionPublic], str | None]:
    conditions = f.conditions(pin_index=session.bind.dialect.name == "sqlite")
    if cursor:
        conditions = [*conditions, _after_cursor(cursor)]
    statement = (select(interactions).where(*conditions)
                 .order_by(interactions.c.occurred_at.desc(), interactions.c.id.desc()).limit(limit + 1))
    rows = (await session.execute(statement)).all()  # Core rows: no ORM identity map to fill
    items = [store.to_public(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor([last.occurred_at.isoformat(), last.id])
    return items, next_cursor


async def survivor_or_redirect(session: AsyncSession, customer_id: str, suffix: str, query: str = "") -> None:
    """Redirect (307) to the survivor's resource when `customer_id` was merged into another."""
    survivor = (await load_states(session, [customer_id])).survivor(customer_id)
    if survivor != customer_id:
        location = f"/v1/customers/{survivor}/{suffix}" + (f"?{query}" if query else "")
        raise Redirect(location, {"detail": f"customer {customer_id} was merged into {survivor}",
                                  "merged_into": survivor})


async def timeline(ctx: ServiceContext, customer_id: str, f: InteractionFilter, *, limit: int = 50,
                   cursor: str | None = None, query: str = "") -> tuple[list[InteractionPublic], str | None]:
    async with ctx.read_session_factory() as session:
        await survivor_or_redirect(session, customer_id, "timeline", query)
        return await _page(session, replace(f, customer_id=customer_id), limit=limit, cursor=cursor)


async def list_interactions(ctx: ServiceContext, f: InteractionFilter, *, limit: int = 50,
                            cursor: str | None = None) -> tuple[list[InteractionPublic], str | None]:
    async with ctx.read_session_factory() as session:
        return await _page(session, f, limit=limit, cursor=cursor)
