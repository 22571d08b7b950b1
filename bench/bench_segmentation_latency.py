"""Segmentation latency end to end: the delay from an order's POST (orders service) to the
customer's profile showing it (GET /v1/profiles/{id} has the new order count) and to the
crm.segment.member_entered.v1 event on the broker, p50/p99.

A dev broker (Tansu) starts on a free port; the contacts, orders and segmentation apps run in
this process (their lifespans, so their relays and consumers run for real, each on a fresh
migrated SQLite database in a temporary directory), driven through httpx.ASGITransport. A rule
segment {"all": [{"field": "order_count", "op": "gte", "value": 1}]} is created first, then N
contacts; once segmentation has every contact's profile, one order per contact is posted,
naming the contact's id, one at a time: each order is timed until its profile shows it (polled
every --poll-ms) and until its member_entered event reaches a consumer on crm.segments.v1.

    .venv/bin/python bench/bench_segmentation_latency.py [--orders 100] [--poll-ms 2]

Everything (three services, the broker, the polling client) shares the machine's cores, so the
figures include that contention; the profile figure is also rounded up to the poll interval.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

from bench._support import play_the_gateway  # noqa: E402
from deploy.dev_broker import TOPICS, ensure_topics, start_broker, stop_broker  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.events import rfc3339, utcnow  # noqa: E402
from services.common.migrate import upgrade  # noqa: E402
from services.common.settings import load_settings  # noqa: E402

AS_GATEWAY = play_the_gateway()

SERVICES = ("contacts", "orders", "segmentation")
RULE = {"all": [{"field": "order_count", "op": "gte", "value": 1}]}
ENTERED = "crm.segment.member_entered.v1"



def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def create_app(name: str, url: str, bootstrap: str, prefix: str):
    module = __import__(f"services.{name}.app", fromlist=["create_app"])
    settings = load_settings(name, database_url=url, kafka_bootstrap_servers=bootstrap, kafka_topic_prefix=prefix,
                             log_requests=False, run_background_tasks=True, kafka_session_timeout_ms=3000)
    return module.create_app(settings)


@contextlib.asynccontextmanager
async def running(app):
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench",
                                     headers=AS_GATEWAY) as client:
            yield client


class EnteredWatcher:
    """A consumer on crm.segments.v1 noting when each member_entered event reached it."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=10)
        self.seen: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future] = {}
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            at = time.perf_counter()
            event = orjson.loads(record.value)
            if event.get("type") != ENTERED:
                continue
            customer = event["subject"]
            self.seen.setdefault(customer, at)
            waiter = self.waiters.get(customer)
            if waiter is not None and not waiter.done():
                waiter.set_result(at)

    async def wait(self, customer: str, timeout: float) -> float:
        if customer in self.seen:
            return self.seen[customer]
        waiter = self.waiters.setdefault(customer, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()


async def wait_until(check, timeout: float, poll: float) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if await check():
            return time.perf_counter()
        await asyncio.sleep(poll)
    raise TimeoutError("condition not met in time")


async def measure(args, workdir: Path) -> None:
    port = free_port()
    bootstrap, prefix = f"127.0.0.1:{port}", f"lat{uuid.uuid4().hex[:8]}."
    broker = start_broker(port, log_path=str(workdir / "tansu.log"))
    try:
        await ensure_topics(bootstrap, [prefix + t for t in TOPICS])
        urls = {name: f"sqlite+aiosqlite:///{workdir}/{name}.db" for name in SERVICES}
        for name, url in urls.items():
            await asyncio.to_thread(upgrade, name, url)
        watcher = EnteredWatcher(bootstrap, prefix + "crm.segments.v1")
        await watcher.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients = {name: await stack.enter_async_context(running(create_app(name, url, bootstrap, prefix)))
                           for name, url in urls.items()}
                await run(args, clients, watcher)
        finally:
            await watcher.stop()
    finally:
        stop_broker(broker)


async def run(args, clients: dict[str, httpx.AsyncClient], watcher: EnteredWatcher) -> None:
    contacts, orders, seg = clients["contacts"], clients["orders"], clients["segmentation"]
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    poll = args.poll_ms / 1000
    response = await seg.post("/v1/segments", json={"name": "bought once", "rule": RULE})
    assert response.status_code == 201, response.text
    segment_id = response.json()["id"]

    async def segment_current() -> bool:
        return (await seg.get(f"/v1/segments/{segment_id}")).json()["state"] == "current"

    await wait_until(segment_current, 60, 0.05)
    ids = []
    for i in range(args.orders):
        response = await contacts.post("/v1/contacts", json={"given_name": "Bench", "family_name": f"N{i}",
                                                              "emails": [f"lat-{uuid.uuid4().hex[:12]}@example.com"]})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    async def all_profiles() -> bool:
        for cid in ids:
            if (await seg.get(f"/v1/profiles/{cid}")).status_code != 200:
                return False
        return True

    started = time.perf_counter()
    await wait_until(all_profiles, 120, 0.2)
    print(f"{len(ids)} contacts created; all their profiles present after {time.perf_counter() - started:.1f} s")
    await asyncio.sleep(1)  # let every service go idle before the timed orders
    to_profile, to_event = [], []
    for i, cid in enumerate(ids):
        body = {"external_id": f"lat-{i}-{uuid.uuid4().hex[:8]}", "platform": "bench", "currency": "USD",
                "channel": "web", "customer": {"id": cid}, "total": "28.00", "placed_at": rfc3339(utcnow()),
                "lines": [{"sku": "TEA-1", "name": "Green tea", "category": "tea", "quantity": "2",
                           "unit_price": "14.00"}]}

        async def shows_order(cid=cid) -> bool:
            response = await seg.get(f"/v1/profiles/{cid}")
            return response.status_code == 200 and response.json()["order_count"] >= 1

        posted = time.perf_counter()
        response = await orders.post("/v1/orders", json=body)
        assert response.status_code in (200, 201), response.text
        shown = await wait_until(shows_order, 30, poll)
        entered = await watcher.wait(cid, 30)
        to_profile.append((shown - posted) * 1000)
        to_event.append((entered - posted) * 1000)
    for label, values in (("POST -> profile shows the order", to_profile),
                          ("POST -> member_entered on the broker", to_event)):
        print(f"{label:<38} p50 {pct(values, .5):7.1f} ms   p99 {pct(values, .99):7.1f} ms   "
              f"max {max(values):7.1f} ms   ({len(values)} orders, one at a time)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=2.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-seg-latency-"))
    try:
        await measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
