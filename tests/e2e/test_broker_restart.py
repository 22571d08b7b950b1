"""The development broker stopped and started again (empty: Tansu keeps its log in memory) in
the middle of a burst of orders, while the segmentation service lags behind (paused, so the
first half of the burst waits for it in the broker): every order reaches the profiles exactly
once.

The orders acknowledged just before the stop were lost with the broker's log; the relays notice
(services/common/relay.py) and send their retained outbox again, and the consumers, whose
committed offsets went with the broker too, read the new log from its start."""
from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from deploy.dev_broker import TOPICS, ensure_topics, start_broker, stop_broker
from deploy.local_system import LocalSystem, free_port
from tests.e2e.conftest import SERVICES
from tests.e2e.test_system import client_for, eventually, order_body

pytestmark = [pytest.mark.e2e, pytest.mark.broker]
CUSTOMERS, ORDERS = 30, 240


async def post_burst(shop, numbers: range) -> None:
    """Orders in batches of 20, as a platform syncing a rush would send them."""
    for start in range(numbers.start, numbers.stop, 20):
        batch = [order_body(n, f"buyer{n % CUSTOMERS}@example.ir") for n in range(start, min(start + 20, numbers.stop))]
        answer = await shop.post("/v1/orders/batch", json={"items": batch})
        assert answer.status_code in (200, 207), answer.text


async def published_all(system) -> bool:
    """The orders service's outbox is empty: the broker acknowledged every order event."""
    async with httpx.AsyncClient(base_url=system.url("orders"), trust_env=False) as client:
        return "crm_outbox_pending_events 0.0" in (await client.get("/metrics")).text


async def test_a_broker_restart_mid_burst_loses_and_doubles_no_order(database_factory, tmp_path, unique):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    broker = start_broker(port, log_path=str(tmp_path / "tansu-1.log"))
    urls = {name: await database_factory.fresh(name) for name in SERVICES}
    system = LocalSystem(workdir=tmp_path / "system", bootstrap=bootstrap, database_urls=urls,
                         topic_prefix=f"r{unique}.", env={"GATEWAY_AUTH": "on", "GATEWAY_RATE_PER_SECOND": "1000",
                                                          "GATEWAY_RATE_BURST": "2000"})
    await asyncio.to_thread(system.start)
    try:
        shop = client_for(system, system.create_key("shop", "orders:write"))
        reader = client_for(system, system.create_key("reader", "segments:read"))
        async with shop, reader:
            segmentation = system.children["segmentation"]
            segmentation.send_signal(signal.SIGSTOP)  # lagging: the burst waits for it in the broker
            await post_burst(shop, range(0, ORDERS // 2))
            await eventually(lambda: published_all(system), timeout=30)
            stop_broker(broker)  # mid-burst: what it acknowledged and segmentation never read is gone
            await post_burst(shop, range(ORDERS // 2, ORDERS * 3 // 4))  # accepted meanwhile, in the outbox
            broker = start_broker(port, log_path=str(tmp_path / "tansu-2.log"))
            await ensure_topics(bootstrap, [system.topic(t) for t in TOPICS], partitions=6)
            segmentation.send_signal(signal.SIGCONT)
            await post_burst(shop, range(ORDERS * 3 // 4, ORDERS))

            async def counted():
                profiles, cursor = [], None
                while True:
                    page = (await reader.get("/v1/profiles", params={"limit": 500, **({"cursor": cursor} if cursor
                                                                                      else {})})).json()
                    profiles += page["items"]
                    cursor = page.get("next_cursor")
                    if not cursor:
                        break
                total = sum(p["order_count"] for p in profiles)
                # The contacts' events were lost with the broker too: their re-sending fills in the emails.
                return profiles if total >= ORDERS and all(p["email"] for p in profiles) else None

            profiles = await eventually(counted, timeout=120, interval=1.0)
            assert profiles, f"not every order reached the profiles:\n{system.log_tail('segmentation')}"
            by_email = {p["email"]: p["order_count"] for p in profiles if p["status"] == "active"}
            expected = {f"buyer{c}@example.ir": len(range(c, ORDERS, CUSTOMERS)) for c in range(CUSTOMERS)}
            wrong = {email: (by_email.get(email), count) for email, count in expected.items()
                     if by_email.get(email) != count}
            others = sorted(set(by_email) - set(expected))
            assert not wrong and not others, (wrong, others)  # each order exactly once, with its own customer
    finally:
        if "segmentation" in system.children:
            system.children["segmentation"].send_signal(signal.SIGCONT)
        system.stop()
        stop_broker(broker)
