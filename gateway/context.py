"""What the gateway's routes need at run time, built in the lifespan; and the one gate every
request passes: authenticate, rate-limit, check the scope."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import Caller

from .auth import Authenticator, KeyCache, Principal
from .metrics import GatewayMetrics
from .problems import GatewayProblem, RateLimited
from .rate_limit import RateLimiter, retry_after_header
from .routes import Upstream
from .service_client import ServiceClient
from .settings import GatewaySettings


@dataclass
class GatewayContext:
    settings: GatewaySettings
    engine: AsyncEngine  # the gateway's own database: API keys and the audit trail
    client: httpx.AsyncClient  # the rare calls to services: health, the merged API documents
    services: ServiceClient  # forwarding and the gateway's own calls to services (service_client.py)
    upstreams: dict[str, Upstream]
    authenticator: Authenticator
    key_cache: KeyCache | None
    limiter: RateLimiter
    metrics: GatewayMetrics


async def context(request: Request) -> GatewayContext:
    # async: as a plain def dependency it would cost a thread-pool hop on every request.
    return request.app.state.gateway


async def admit(request: Request, ctx: GatewayContext, scope: str | None = None) -> Principal:
    """401 without a valid key, 429 over the key's rate, 403 without `scope` (None: any key)."""
    try:
        principal = await ctx.authenticator.authenticate(request)
        bucket = principal.key_id or f"client:{request.client.host if request.client else 'unknown'}"
        wait = ctx.limiter.acquire(bucket, rate=principal.rate_per_second, burst=principal.rate_burst)
        if wait > 0:
            raise RateLimited(f"the rate limit of this key is exceeded; retry in {wait:.2f} s",
                              headers={"Retry-After": retry_after_header(wait)})
    except GatewayProblem as problem:
        ctx.metrics.refusals.labels(problem.slug).inc()
        raise
    request.state.principal = principal
    if scope is not None:
        check_scope(ctx, principal, scope)
    return principal


def check_scope(ctx: GatewayContext, principal: Principal, scope: str) -> None:
    """403 (counted) unless the principal holds `scope`."""
    try:
        principal.require(scope)
    except GatewayProblem as problem:
        ctx.metrics.refusals.labels(problem.slug).inc()
        raise


def caller_of(request: Request) -> Caller:
    """The admitted caller of this request, as the audit trail names it."""
    principal: Principal = request.state.principal
    return Caller(key_id=principal.key_id, key_name=principal.name, request_id=request.state.request_id)


def require(scope: str | None):
    """A route dependency: the caller's Principal, admitted for `scope`."""

    async def dependency(request: Request) -> Principal:
        return await admit(request, await context(request), scope)

    return Depends(dependency)


ContextDep = Annotated[GatewayContext, Depends(context)]
