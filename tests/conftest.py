"""Shared fixtures: migrated databases, the dev broker, and service apps driven through httpx."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select

from deploy.local_system import free_port
from services.common.audit import AUDIT_TOPIC
from services.common.gateway_guard import GATEWAY_TOKEN_HEADER
from services.common.settings import load_settings
from services.contacts.settings import contacts_settings
from tests.databases import DatabaseFactory

# The secret the test apps share with "their gateway": a test client of a service app sends it,
# as the gateway would (a service refuses to start without one, and answers nobody else).
TEST_GATEWAY_TOKEN = "test-gateway-token-" + uuid.uuid4().hex
TEST_SUPPRESSION_SECRET = "test-suppression-secret-" + uuid.uuid4().hex


@pytest.hookimpl(wrapper=True)
def pytest_timeout_set_timer(item, settings):
    """A test that times out also prints the stack of every asyncio task still pending: the
    main thread's traceback alone shows only the event loop waiting in select()."""
    result = yield
    fail = signal.getsignal(signal.SIGALRM)
    if callable(fail):
        def dump_tasks_then_fail(signum, frame):
            with contextlib.suppress(RuntimeError):  # no loop running: nothing to show
                for task in asyncio.all_tasks(asyncio.get_running_loop()):
                    task.print_stack(file=sys.stderr)
            fail(signum, frame)

        signal.signal(signal.SIGALRM, dump_tasks_then_fail)
    return result


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory):
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    asyncio.run(factory.drop_all())


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A dev broker (Tansu) of the test session's own, on a free port: "127.0.0.1:<port>"."""
    from deploy.dev_broker import start_broker, stop_broker

    port = free_port()
    process = start_broker(port, log_path=str(tmp_path_factory.mktemp("broker") / "tansu.log"))
    yield {"bootstrap": f"127.0.0.1:{port}", "port": port, "process": process}
    stop_broker(process)


@pytest.fixture
def unique():
    """A short unique suffix for topic and group names."""
    return uuid.uuid4().hex[:10]


def service_settings(service: str, database_url: str, bootstrap: str = "127.0.0.1:1", **overrides):
    """Settings for a test app: background relay/consumers off unless asked (tests drive them).
    Contacts get their own settings (a suppression secret; `contacts_*` overrides)."""
    values = dict(database_url=database_url, kafka_bootstrap_servers=bootstrap, run_background_tasks=False,
                  kafka_session_timeout_ms=1500, gateway_token=TEST_GATEWAY_TOKEN,
                  log_requests=False, import_dir=os.environ.get("PYTEST_TMP_IMPORTS", "/tmp/crm-test-imports"))
    own = {k: v for k, v in overrides.items() if k.startswith("contacts_")}
    values.update({k: v for k, v in overrides.items() if k not in own})
    settings = load_settings(service, **values)
    if service != "contacts":
        return settings
    return contacts_settings(settings, **{"contacts_suppression_secret": TEST_SUPPRESSION_SECRET, **own})


async def staged_events(client, event_type: str | None = None, *, topic: str | None = None) -> list[dict]:
    """The events in the app's outbox for its own topic (or `topic`), in commit order (optionally
    only those of one type). Audit entries (services/common/audit.py) go to crm.audit.v1."""
    ctx = client.app.state.ctx
    outbox = ctx.tables.outbox
    statement = (select(outbox.c.payload).where(outbox.c.topic == (topic or ctx.topic))
                 .order_by(outbox.c.position))
    if event_type:
        statement = statement.where(outbox.c.type == event_type)
    async with ctx.session_factory() as session:
        return [orjson.loads(payload) for payload in (await session.execute(statement)).scalars()]


async def audit_entries(client) -> list[dict]:
    """The audit events the app staged (its crm.audit.v1 outbox rows), as their data."""
    topic = client.app.state.ctx.settings.kafka_topic_prefix + AUDIT_TOPIC
    return [event["data"] for event in await staged_events(client, topic=topic)]


async def sqlite_plan(database_url: str, metadata, statement) -> str:
    """SQLite's EXPLAIN QUERY PLAN of a PreparedStatement (its list parameters empty) on a fresh
    schema of `metadata`, the plan's steps joined by " | "."""
    from sqlalchemy import text
    from sqlalchemy.dialects import sqlite

    from services.common.database import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            sql = statement._compile(sqlite.dialect()).sql.replace("?", "'[]'")
            return " | ".join(row[3] for row in await connection.execute(text("EXPLAIN QUERY PLAN " + sql)))
    finally:
        await engine.dispose()


def context_of(client_or_ctx):
    """The ServiceContext of a test client (or the context itself)."""
    state = getattr(getattr(client_or_ctx, "app", None), "state", None)
    return state.ctx if state is not None else client_or_ctx


async def deliver(client_or_ctx, topic: str, *events: dict, together: bool = False) -> list[str]:
    """Settle events of `topic` exactly as the app's consumer does (apply_deliveries), each in a
    poll of its own, or all in one poll with `together`. Returns per event the outcome of the
    consumer that took it: applied, duplicate or stale; ignored when every consumer passed it over."""
    from services.common.consumer_apply import apply_deliveries

    ctx = context_of(client_or_ctx)
    batches = [list(events)] if together else [[event] for event in events]
    outcomes: list[str] = []
    for batch in batches:
        for outcome in await apply_deliveries(ctx, ctx.subscription, [(topic, event) for event in batch]):
            taken = [value for value in outcome.values() if value != "ignored"]
            outcomes.append(taken[0] if taken else "ignored")
    return outcomes


@contextlib.asynccontextmanager
async def running_app(app):
    """Run the app's lifespan and give an httpx client bound to it; on a service app the client
    presents the service's gateway token, as the gateway does."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        service = getattr(app.state, "ctx", None)
        headers = {GATEWAY_TOKEN_HEADER: service.settings.gateway_token} if service is not None else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            client.app = app
            yield client


@pytest_asyncio.fixture
async def contacts_db(database_factory):
    return await database_factory.fresh("contacts")


@pytest_asyncio.fixture
async def contacts(contacts_db):
    """An httpx client on a contacts app with a fresh database; `.app.state.ctx` is its context."""
    from services.contacts.app import create_app

    async with running_app(create_app(service_settings("contacts", contacts_db))) as client:
        yield client
