"""Outbound webhook fixtures: the gateway's database (a fresh PostgreSQL one in the PostgreSQL run),
a real HTTP server that receives deliveries, a clock the test moves, and a gateway with an admin key."""
from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

from services.common.events import build_event
from tests.databases import POSTGRES_URL, _pg_dsn
from tests.gateway.conftest import auth, service_urls, start_gateway  # noqa: F401 (service_urls: autouse)


@pytest_asyncio.fixture
async def gateway_db(tmp_path):
    if not POSTGRES_URL:
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        return
    name = f"crm_t_gateway_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_pg_dsn(POSTGRES_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: records every request; answers `statuses[path]` in turn
    (the last one again once they run out), 204 on other paths."""
    url: str
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    fail_subjects: set[str] = field(default_factory=set)  # bodies naming these get a 503

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def receiver():
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            rec = state["receiver"]
            rec.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            queue = rec.statuses.get(self.path)
            status = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else 204
            if any(subject.encode() in body for subject in rec.fail_subjects):
                status = 503
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["receiver"]
    server.shutdown()
    server.server_close()
    thread.join(5)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest_asyncio.fixture
async def gateway(tmp_path, gateway_db):
    async with start_gateway(tmp_path, {}, database_url=gateway_db, webhooks_allow_private_targets=True) as gw:
        gw.admin = auth(await gw.key("ops", "webhooks:admin"))
        yield gw


def contact_event(customer_id: str, sequence: int, *, event_type: str = "crm.contact.updated.v1",
                  at: datetime | None = None, **data) -> dict:
    return build_event(service="contacts", event_type=event_type, subject=customer_id, sequence=sequence,
                       data={"contact": {"id": customer_id, **data}, "changed_fields": list(data)},
                       time=at or datetime.now(timezone.utc) + timedelta(seconds=1))


async def wait_until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)
