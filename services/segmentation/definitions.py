"""Segment definitions and score edges, cached per database engine.

Every profile recompute needs the score edges and the list of segments; they change only when a
segment is created, updated or deleted, the base is re-scored, or a rebuild copies them. Each
of those writes calls `bump` in its own transaction, which gives the one `definitions_version`
row a new random token. A reader reads the token (one primary-key lookup) and reuses what it
cached under that token, else reads both tables, after the token, so what is cached is never
older than the token it is filed under (on PostgreSQL a bump committed in between only makes
it newer, and the next reader sees the new token and reads again). The token is random rather
than a counter, so a bump in a transaction that rolls back never names any content. A database
without the row caches nothing (every call reads both tables).

Rules are parsed once per segment version (membership.compiled_rule), as before.

On SQLite the token is also read only once per transaction (a consumer applies a whole poll of
events in one): every transaction there is a write transaction (BEGIN IMMEDIATE) or a WAL
snapshot, so no other writer's bump can become visible inside it, and this transaction's own
`bump` forgets the memo. On PostgreSQL (READ COMMITTED) each call reads the token again.
"""
from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.prepared import PreparedStatement

from .models import DefinitionsVersionRow, ScoreBreakpointRow, SegmentRow

DV, S, B = DefinitionsVersionRow.__table__, SegmentRow.__table__, ScoreBreakpointRow.__table__
NAME = "definitions"
MEMO_KEY = "definitions_memo"  # session.info: (the transaction it was read in, Definitions)


@dataclass(frozen=True)
class Definitions:
    segments: tuple[dict[str, Any], ...]  # id, name, type, rule, version (read-only: shared)
    edges: dict[str, list]  # score edge name -> edges (read-only: shared)


_TOKEN = PreparedStatement(lambda _dialect: select(DV.c.token).where(DV.c.name == bindparam("name")))
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> (token, Definitions)


async def current(session: AsyncSession) -> Definitions:
    memo = session.info.get(MEMO_KEY)
    if memo is not None and memo[0] is session.get_transaction():
        return memo[1]
    found = await _current(session)  # begins the transaction if none was
    if session.bind.dialect.name == "sqlite":
        session.info[MEMO_KEY] = (session.get_transaction(), found)
    return found


async def _current(session: AsyncSession) -> Definitions:
    token = next((row.token for row in await _TOKEN.fetch(session, name=NAME)), None)
    engine = session.bind
    cached = _cache.get(engine)
    if token is not None and cached is not None and cached[0] == token:
        return cached[1]
    segments = tuple(dict(r) for r in (await session.execute(
        select(S.c.id, S.c.name, S.c.type, S.c.rule, S.c.version))).mappings())
    edges = {row.name: row.edges for row in (await session.execute(select(B.c.name, B.c.edges)))}
    found = Definitions(segments=segments, edges=edges)
    if token is not None:
        _cache[engine] = (token, found)
    return found


async def bump(session: AsyncSession) -> None:
    """Call in the transaction that changes segments or score edges."""
    session.info.pop(MEMO_KEY, None)
    token = str(uuid.uuid4())
    result = await session.execute(update(DV).where(DV.c.name == NAME).values(token=token))
    if result.rowcount == 0:
        await session.execute(insert(DV).values(name=NAME, token=token))
