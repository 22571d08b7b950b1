"""The app factory every service uses: engine, outbox relay and consumers are built in the
lifespan (never at import time), and every process gets /healthz, /readyz, /metrics,
problem+json errors and request logs the same way."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Annotated, Any, Awaitable, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from .audit import AUDIT_TOPIC, CallerMiddleware
from .consumer import EventConsumer
from .consumer_apply import Subscription
from .database import create_engine, create_session_factory, is_sqlite, ping
from .errors import PROBLEM_BASE, problem_response, install_problem_handlers
from .events import topic_for
from .gateway_guard import GatewayOnlyMiddleware
from .kafka import make_consumer, make_producer
from .kernel_tables import KernelTables
from .metrics import ServiceMetrics
from .observability import RequestContextMiddleware, configure_logging
from . import openapi_contract
from .outbox import SIGNAL_KEY
from .request_checks import check_request
from .relay import OutboxRelay
from .settings import ServiceSettings, check_secret

log = logging.getLogger("crm.service")

@dataclass
class ServiceContext:
    """What routes and use cases need at run time; one per running app."""

    settings: ServiceSettings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    # For queries that only read: on SQLite they then don't queue behind the writer lock.
    read_session_factory: async_sessionmaker[AsyncSession]
    tables: KernelTables
    metrics: ServiceMetrics
    outbox_signal: asyncio.Event
    topic: str
    subscription: Subscription | None = None  # what the service consumes (consumer_apply.py)
    relay: OutboxRelay | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    async def dispose(self) -> None:
        """Close both engines' connections (the read engine is the same one on PostgreSQL)."""
        await self.engine.dispose()
        await self.read_session_factory.kw["bind"].dispose()


async def get_context(request: Request) -> ServiceContext:
    # async: a plain def dependency would cost a thread-pool hop on every request.
    return request.app.state.ctx


ContextDep = Annotated[ServiceContext, Depends(get_context)]


# Tags every service has, beside its own (create_service_app's `tags`).
COMMON_TAGS = {
    "operations": "Liveness, readiness and Prometheus metrics of this process",
    "events": "The AsyncAPI document of the topic this service publishes, with each event's JSON Schema",
}


def create_service_app(*, settings: ServiceSettings, tables: KernelTables, routers: list[APIRouter],
                       title: str, description: str, tags: dict[str, str], subscription: Subscription | None = None,
                       unlimited_paths: tuple[str, ...] = (), topic: str | None = None,
                       on_start: Callable[[ServiceContext], Awaitable[None]] | None = None) -> FastAPI:
    """`topic` is the topic the service publishes to; by default crm.<service name>.v1. `tags`:
    the description of each OpenAPI tag its routers use. `subscription`: the events the service
    consumes and how it applies them (consumer_apply.py). Raises InsecureSettings without a
    proper GATEWAY_TOKEN: a service answers only the gateway, always."""
    check_secret("GATEWAY_TOKEN", settings.gateway_token, settings.environment)
    configure_logging()
    metrics = ServiceMetrics(settings.service_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = build_context(settings, tables, metrics, topic, subscription)
        app.state.ctx = ctx
        if settings.run_background_tasks:
            start_background(ctx)
        if on_start is not None:
            await on_start(ctx)
        try:
            yield
        finally:
            await stop_background(ctx)
            await ctx.dispose()

    app = FastAPI(title=title, description=description, version="1.0.0", lifespan=lifespan,
                  dependencies=[Depends(check_request)],
                  generate_unique_id_function=openapi_contract.operation_id(settings.service_name))
    openapi_contract.install(app, tags={**tags, **COMMON_TAGS})
    install_problem_handlers(app)
    app.add_middleware(CallerMiddleware)  # innermost: only requests the gateway sent name a caller
    # Inside RequestContextMiddleware: refusals are logged and counted too.
    app.add_middleware(GatewayOnlyMiddleware, token=settings.gateway_token, service=settings.service_name)
    app.add_middleware(RequestContextMiddleware, service=settings.service_name, metrics=metrics,
                       max_body_bytes=settings.max_body_bytes, unlimited_paths=unlimited_paths,
                       log_requests=settings.log_requests)
    app.include_router(_operations_router(metrics))
    for router in routers:
        app.include_router(router)
    return app


def build_context(settings: ServiceSettings, tables: KernelTables, metrics: ServiceMetrics,
                  topic: str | None = None, subscription: Subscription | None = None) -> ServiceContext:
    engine = create_engine(settings.database_url)
    # PostgreSQL: one snapshot per read transaction, so a read of several statements (a row and
    # its child rows) never mixes two commits; read-only snapshots cannot fail to serialize.
    read_engine = (create_engine(settings.database_url, read_only=True) if is_sqlite(settings.database_url)
                   else engine.execution_options(isolation_level="REPEATABLE READ"))
    signal = asyncio.Event()
    info = {SIGNAL_KEY: signal}
    session_factory = create_session_factory(engine, info=info)
    ctx = ServiceContext(settings=settings, engine=engine, session_factory=session_factory,
                         read_session_factory=create_session_factory(read_engine), tables=tables,
                         metrics=metrics, outbox_signal=signal, subscription=subscription,
                         topic=settings.kafka_topic_prefix + (topic or topic_for(settings.service_name)))
    return ctx


def make_relay(ctx: ServiceContext) -> OutboxRelay:
    return OutboxRelay(engine=ctx.engine, session_factory=ctx.session_factory, tables=ctx.tables,
                       settings=ctx.settings, metrics=ctx.metrics, signal=ctx.outbox_signal,
                       topics=[ctx.topic, ctx.settings.kafka_topic_prefix + AUDIT_TOPIC],
                       producer_factory=lambda: make_producer(ctx.settings))


def make_event_consumer(ctx: ServiceContext, subscription: Subscription) -> EventConsumer:
    """The process's one Kafka consumer, in a group named after the service (prefixed like the
    topics, so deployments or tests sharing a broker never share members)."""
    topics = [ctx.settings.kafka_topic_prefix + topic for topic in subscription.topics()]
    group_id = ctx.settings.kafka_topic_prefix + ctx.settings.service_name
    return EventConsumer(ctx=ctx, subscription=subscription,
                         consumer_factory=lambda: make_consumer(ctx.settings, *topics, group_id=group_id),
                         producer_factory=lambda: make_producer(ctx.settings))


def start_background(ctx: ServiceContext) -> None:
    ctx.relay = make_relay(ctx)
    ctx.tasks.append(asyncio.create_task(ctx.relay.run(), name=f"{ctx.settings.service_name}-relay"))
    if ctx.subscription is not None:
        consumer = make_event_consumer(ctx, ctx.subscription)
        ctx.tasks.append(asyncio.create_task(consumer.run(), name=f"{ctx.settings.service_name}-consumer"))


async def cancel_and_wait(tasks: list[asyncio.Task], *, rounds: int = 50) -> list[asyncio.Task]:
    """Cancel the tasks, again while any is still running: a cancellation can be lost inside
    library code (asyncio.wait_for on Python 3.11, client start-ups), and a task that outlives
    its cancel would hang whoever waits for it. Returns the tasks that still did not stop."""
    pending = [task for task in tasks if not task.done()]
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.2)
        pending = [task for task in pending if not task.done()]
    return pending


async def stop_background(ctx: ServiceContext) -> None:
    pending = await cancel_and_wait(ctx.tasks)
    if pending:
        log.error("background tasks still running at shutdown: %s", ", ".join(t.get_name() for t in pending))
    for task in ctx.tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background task %s had failed", task.get_name(), exc_info=task.exception())
    ctx.tasks.clear()


async def broker_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), timeout)
        except (OSError, asyncio.TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


def _operations_router(metrics: ServiceMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Its database and broker are reachable",
                responses={503: {"description": "The database or the broker is unreachable"}})
    async def readyz(ctx: ContextDep):
        checks = {"database": "ok", "broker": "ok"}
        try:
            await asyncio.wait_for(ping(ctx.engine), 2)
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        if not await broker_reachable(ctx.settings.kafka_bootstrap_servers):
            checks["broker"] = "unreachable"
        if all(value == "ok" for value in checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        return problem_response({"type": PROBLEM_BASE + "not-ready", "title": "Not ready", "status": 503,
                                 "detail": "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
                                 "checks": checks})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return router
