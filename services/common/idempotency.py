"""Idempotency keys for writes that clients retry (DESIGN.md).

The same key with the same body answers the first response again; the same key with another
body is an error (422); a key whose first request is still running answers 409. A request
that failed with a server error releases its key so the client can retry. A claim whose process
died mid-request (nothing released it) is taken over once `idempotency_lease_s` has passed:
otherwise a crash would block the client's retries for the key's whole life. Keys live
`idempotency_ttl_hours` (at least 24).

Keys are scoped by the caller's API key and by the operation (as Stripe scopes them by account):
shop B's `Idempotency-Key: 1001` is another key than shop A's, so neither can be refused for the
other's body nor be answered the other's stored response.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fastapi.responses import JSONResponse

from .audit import current_caller
from .errors import PROBLEM_JSON, BadRequest, DomainError, IdempotencyKeyInFlight, IdempotencyKeyReused
from .events import utcnow
from .kernel_tables import KernelTables

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: Any


def fingerprint(method: str, path: str, body: bytes) -> str:
    # The body is canonicalised so key order and white space do not make another request.
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


async def run_idempotently(session_factory: async_sessionmaker[AsyncSession], tables: KernelTables, *,
                           scope: str, key: str, request_fingerprint: str, ttl_hours: int,
                           action: Callable[[], Awaitable[StoredResponse]], lease_s: float = 60.0) -> StoredResponse:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                         errors=[{"field": "Idempotency-Key", "loc": ["header", "Idempotency-Key"],
                                  "message": "invalid length"}])
    table = tables.idempotency_keys
    now = utcnow()
    where = (table.c.scope == scope) & (table.c.key == key)
    async with session_factory() as session, session.begin():
        await session.execute(delete(table).where(where & (table.c.expires_at < now)))
        try:
            async with session.begin_nested():
                await session.execute(insert(table).values(
                    scope=scope, key=key, fingerprint=request_fingerprint, state="in_flight",
                    created_at=now, expires_at=now + timedelta(hours=ttl_hours)))
            claimed = True
        except IntegrityError:
            claimed = False
            existing = (await session.execute(select(table).where(where))).one()
            if (existing.fingerprint == request_fingerprint and existing.state != "done"
                    and existing.created_at < now - timedelta(seconds=lease_s)):
                # Abandoned: take it over, unless another retry just did (the claim time is the guard).
                taken = await session.execute(update(table).where(
                    where & (table.c.state == existing.state) & (table.c.created_at == existing.created_at)
                ).values(created_at=now))
                claimed = taken.rowcount == 1
    if not claimed:
        if existing.fingerprint != request_fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was first used with a different request; use a new key for a new request")
        if existing.state != "done":
            raise IdempotencyKeyInFlight("the first request with this Idempotency-Key has not finished yet; retry shortly")
        return StoredResponse(existing.response_status, orjson.loads(existing.response_body))

    try:
        response = await action()
    except DomainError as exc:
        response = StoredResponse(exc.status, exc.problem())
    except BaseException:
        async with session_factory() as session, session.begin():
            await session.execute(delete(table).where(where))
        raise
    async with session_factory() as session, session.begin():
        await session.execute(update(table).where(where).values(
            state="done", response_status=response.status, response_body=orjson.dumps(response.body).decode()))
    return response


def caller_scope(operation: str) -> str:
    """The key space of one operation for the calling API key ("-" without one: GATEWAY_AUTH=off)."""
    return f"{operation}:{current_caller().key_id or '-'}"  # 19 + 1 + 36 characters at most: fits 64


async def idempotent(ctx, request, *, scope: str, key: str | None,
                     action: Callable[[], Awaitable[StoredResponse]]) -> tuple[StoredResponse, bool]:
    """Run `action` once per Idempotency-Key of this caller and operation `scope` (or always,
    without a key); (response, replayed)."""
    if key is None:
        return await action(), False
    body = await request.body()
    calls = 0

    async def counted() -> StoredResponse:
        nonlocal calls
        calls += 1
        return await action()

    response = await run_idempotently(ctx.session_factory, ctx.tables, scope=caller_scope(scope), key=key,
                                      request_fingerprint=fingerprint(request.method, request.url.path, body),
                                      ttl_hours=ctx.settings.idempotency_ttl_hours, action=counted,
                                      lease_s=ctx.settings.idempotency_lease_s)
    return response, calls == 0


def to_json_response(response: StoredResponse, replayed: bool, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    media_type = PROBLEM_JSON if response.status >= 400 else "application/json"
    return JSONResponse(response.body, status_code=response.status, headers=headers, media_type=media_type)
