"""The API gateway (port 8000): the one public entry point. It authenticates API keys, limits
each key's rate, routes each /v1 path to the service that owns it, and answers the customer 360
view, the merged API documents and its own health and metrics."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx
from fastapi import Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware

from services.common.database import create_engine
from services.common.errors import MethodNotAllowed, NotFound, install_problem_handlers
from services.common.gateway_guard import GATEWAY_TOKEN_HEADER
from services.common import openapi_contract
from services.common.observability import RequestContextMiddleware, configure_logging
from services.common.request_checks import allowed_methods, check_request
from services.common.service_app import cancel_and_wait
from services.common.settings import ServiceSettings, load_settings

from . import admin_api, api_tracking, api_webhooks, audit_api, customers_api, migrate, operations
from .auth import Authenticator, KeyCache
from .context import GatewayContext, admit, check_scope, context
from .gateway_consumer import GatewayConsumer
from .metrics import GatewayMetrics
from .problems import install_gateway_problem_handler
from .proxy import forward
from .rate_limit import RateLimiter
from .routes import Upstream, route_for, upstreams
from .service_client import AiohttpServiceClient, HttpxServiceClient
from .settings import GatewaySettings
from .webhook_tasks import webhook_sender
from .shop_integrations import api_admin as shop_admin_api, api_webhooks as shop_webhooks_api

log = logging.getLogger("crm.gateway")

# Streamed to the contacts service as they come, so the body limit does not apply.
UNLIMITED_PATHS = ("/v1/contacts/import",)
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
TAGS = {"customer 360": "A customer's whole story from every service in one answer",
        "privacy": "Erasure everywhere and its confirmations; a person's data export",
        "api keys": "API keys and their scopes (admin)",
        "webhooks": "Outbound webhooks: subscriptions, signed deliveries (Standard Webhooks) and their log",
        "tracking": "A Segment-compatible tracking API: identify, track, page, screen, group, alias, batch",
        "shop integrations": "Shopify and WooCommerce webhooks, signed by the shop (docs/integrations.md)",
        "shop integrations (admin)": "The shops whose webhooks are taken, and the dead letters (admin)"}


@dataclass(frozen=True)
class RouteLabel:
    """What RequestContextMiddleware reads as the metrics' `route` label: the route table's pattern."""

    path: str


def service_headers(settings: GatewaySettings) -> dict[str, str]:
    """Sent with every request to a service: the secret that proves it came through here."""
    return {GATEWAY_TOKEN_HEADER: settings.token}


def service_pools(services: dict[str, Upstream], transport: httpx.AsyncBaseTransport | None
                  ) -> dict[str, httpx.AsyncBaseTransport]:
    """A connection pool per service: httpx checks every connection of a pool on each request, so
    one pool shared by four services made the gateway pay for the idle connections of all of them
    (measured: a quarter of its CPU on proxied reads, bench/bench_gateway.py)."""
    if transport is not None:  # tests route every service through one in-process transport
        return {}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    origins = {httpx.URL(upstream.base_url) for upstream in services.values()}
    return {f"{url.scheme}://{url.netloc.decode()}": httpx.AsyncHTTPTransport(limits=limits) for url in origins}


def create_app(settings: GatewaySettings | None = None, transport: httpx.AsyncBaseTransport | None = None,
               kafka: ServiceSettings | None = None) -> FastAPI:
    """`kafka`: where the gateway's consumer reads crm.audit.v1 and the customer topics (default:
    the KAFKA_* environment)."""
    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the access log already has a line per request
    settings = settings or GatewaySettings()
    settings.check_serving()
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.migrate_on_start:
            await asyncio.to_thread(migrate.upgrade, settings.database_url)
        if not settings.auth:
            log.warning("GATEWAY_AUTH=off: every request is let through as an admin; for local development only")
        engine = create_engine(settings.database_url)
        tasks: list[asyncio.Task] = []
        timeout = httpx.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s,
                                write=settings.read_timeout_s, pool=5.0)
        services = upstreams()
        try:
            async with contextlib.AsyncExitStack() as clients:
                client = await clients.enter_async_context(httpx.AsyncClient(
                    timeout=timeout, transport=transport, mounts=service_pools(services, transport), trust_env=False,
                    headers=service_headers(settings)))
                forwarding = (HttpxServiceClient(client) if transport is not None else
                              await clients.enter_async_context(AiohttpServiceClient(
                                  connect_timeout_s=settings.connect_timeout_s,
                                  read_timeout_s=settings.read_timeout_s, headers=service_headers(settings))))
                cache = KeyCache(engine, settings.key_cache_ttl_s, on_load=metrics.key_lookups.inc)
                app.state.gateway = GatewayContext(
                    settings=settings, engine=engine, client=client, services=forwarding, upstreams=services,
                    authenticator=Authenticator(cache, enabled=settings.auth), key_cache=cache,
                    limiter=RateLimiter(settings.rate_per_second, settings.rate_burst), metrics=metrics)
                kafka_settings = kafka or load_settings("gateway")
                async with webhook_sender(settings=settings, engine=engine, metrics=metrics) as (sender, wake):
                    if settings.consume_audit or wake is not None:
                        consumer = GatewayConsumer(engine=engine, kafka=kafka_settings, metrics=metrics,
                                                   audit=settings.consume_audit, wake=wake)
                        tasks.append(asyncio.create_task(consumer.run(), name="gateway-consumer"))
                    try:
                        yield
                    finally:  # stopped before the sender's HTTP client closes
                        if await cancel_and_wait(tasks + ([sender] if sender is not None else [])):
                            log.error("the gateway's consumer or webhook sender did not stop")
        finally:
            if await cancel_and_wait(tasks):
                log.error("the gateway's consumer did not stop")
            await engine.dispose()

    app = FastAPI(title="CRM API", version="1.0.0", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="The customer database's public API, through its gateway. "
                  "Send an API key as `Authorization: Bearer <key>` or `X-API-Key`.",
                  generate_unique_id_function=openapi_contract.operation_id("gateway"))
    openapi_contract.install(app, tags=TAGS)
    install_problem_handlers(app)
    install_gateway_problem_handler(app)
    app.add_middleware(RequestContextMiddleware, service="gateway", metrics=metrics,
                       max_body_bytes=settings.max_body_bytes, unlimited_paths=UNLIMITED_PATHS,
                       log_requests=settings.log_requests)
    if settings.cors_origin_list:  # added last: outermost, so refusals carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=PROXY_METHODS,
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key",
                                          "If-Match", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After", "Location", "ETag", "WWW-Authenticate"],
                           max_age=600)
    # Its own routes check their requests (services/common/request_checks.py), after admitting
    # the caller where they need a key; proxied paths leave that to the service.
    app.include_router(operations.router, dependencies=[Depends(check_request)])
    app.include_router(admin_api.router)
    app.include_router(customers_api.router)
    app.include_router(audit_api.router)
    app.include_router(api_webhooks.router)
    app.include_router(api_tracking.router)
    app.include_router(shop_webhooks_api.router)
    app.include_router(shop_admin_api.router)

    @app.api_route("/v1/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def route(request: Request):
        ctx = await context(request)
        principal = await admit(request, ctx)  # 401 / 429 before anything about paths is told
        target = route_for(request.url.path)
        if target is None:
            if allow := allowed_methods(request.app, request.url.path, exclude=request.scope.get("route")):
                raise MethodNotAllowed(f"{request.method} is not served at {request.url.path}", allow=allow)
            raise NotFound(f"no service owns {request.url.path}")
        request.scope["route"] = RouteLabel(target.pattern)
        check_scope(ctx, principal, target.scope_for(request.method))
        return await forward(ctx.services, ctx.upstreams[target.service], request, request.state.request_id,
                             ctx.metrics)

    return app
