"""The interactions service against a real broker: a burst while the broker is down is
delivered in full once it is back, and a sign-up published by a running contacts service
attaches the visitor's history through the consumer."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest

from deploy.dev_broker import start_broker, stop_broker
from services.common.topics import ensure_topics
from services.contacts.app import create_app as create_contacts_app
from services.interactions.app import create_app
from tests.common.kafka_tools import events_of, read_topic, wait_for_metric
from tests.conftest import free_port, running_app, service_settings
from tests.interactions.conftest import interactions_settings

pytestmark = pytest.mark.broker


def visits(n: int, label: str) -> list[dict]:
    return [{"customer": {"visitor_id": f"{label}-{i % 40}"}, "type": "page_view", "channel": "web",
             "url": f"https://shop.example/{label}/{i}"} for i in range(n)]


async def burst(client, label: str) -> dict[str, list[int]]:
    """A tracking batch, single posts and ticket changes; returns aggregate id -> versions written."""
    written: dict[str, list[int]] = defaultdict(list)
    batch = (await client.post("/v1/interactions/batch", json={"items": visits(300, label)})).json()
    for result in batch["results"]:
        written[result["id"]].append(1)
    for i in range(10):
        ticket = (await client.post("/v1/interactions", json={"customer": {"id": str(uuid.uuid4())},
                                                              "type": "support_ticket", "channel": "chat"})).json()
        written[ticket["id"]].append(1)
        for status in ("pending", "resolved"):
            updated = (await client.patch(f"/v1/interactions/{ticket['id']}", json={"status": status})).json()
            written[ticket["id"]].append(updated["version"])
    return dict(written)


def per_aggregate(events) -> dict[str, list[int]]:
    """Sequences per interaction in arrival order, repeats of an event id dropped (at least once)."""
    out, seen = defaultdict(list), set()
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            out[event["aggregateid"]].append(event["sequence"])
    return dict(out)


async def test_broker_down_during_a_burst_then_up_every_event_arrives(interactions_db, tmp_path, unique):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = interactions_settings(interactions_db, bootstrap, kafka_topic_prefix=f"t{unique}.",
                                     kafka_topic_partitions=3, run_background_tasks=True, outbox_max_backoff_s=0.5)
    async with running_app(create_app(settings)) as client:
        written = await burst(client, "a")  # no broker yet: the relay keeps retrying
        # 330 interaction events, and 31 audit entries (a batch, 10 posts, 20 ticket changes).
        assert "crm_outbox_pending_events 361.0" in await wait_for_metric(client, "crm_outbox_pending_events 361.0")
        process = start_broker(port, log_path=str(tmp_path / "tansu.log"))
        try:
            topic = client.app.state.ctx.topic
            records = await read_topic(bootstrap, topic, expect=330, timeout=60)
            assert per_aggregate(events_of(records)) == written
            stop_broker(process)  # down again mid-flow; Tansu forgets everything on restart
            more = await burst(client, "b")
            process = start_broker(port, log_path=str(tmp_path / "tansu2.log"))
            # The relay notices the broker lost what it had acknowledged and sends the outbox again.
            records = await read_topic(bootstrap, topic, expect=660, timeout=60)
            assert per_aggregate(events_of(records)) == {**written, **more}
        finally:
            stop_broker(process)


async def test_a_sign_up_through_the_broker_attaches_the_visitors_history(broker, contacts_db, interactions_db,
                                                                          unique):
    prefix = f"t{unique}."
    await ensure_topics(broker["bootstrap"], [f"{prefix}crm.contacts.v1", f"{prefix}crm.orders.v1"], 3)
    contacts_app = create_contacts_app(service_settings("contacts", contacts_db, broker["bootstrap"],
                                                        kafka_topic_prefix=prefix, run_background_tasks=True))
    interactions_app = create_app(interactions_settings(interactions_db, broker["bootstrap"], kafka_topic_prefix=prefix,
                                                        run_background_tasks=True))
    async with running_app(contacts_app) as contacts, running_app(interactions_app) as interactions:
        seen = [(await interactions.post("/v1/interactions", json=item)).json()["id"]
                for item in visits(5, "v-web")[:1] * 5]
        created = await contacts.post("/v1/contacts", json={"given_name": "Nika", "emails": ["nika@example.com"],
                                                            "external_ids": [{"system": "visitor", "id": "v-web-0"}]})
        assert created.status_code == 201, created.text
        customer = created.json()["id"]
        deadline = time.monotonic() + 30
        items = []
        while time.monotonic() < deadline and len(items) < 5:
            items = (await interactions.get(f"/v1/customers/{customer}/timeline")).json()["items"]
            await asyncio.sleep(0.1)
        assert sorted(item["id"] for item in items) == sorted(seen)
        by_email = (await interactions.post("/v1/interactions", json={
            "customer": {"email": "NIKA@example.com"}, "type": "email", "channel": "email",
            "direction": "outbound"})).json()
        assert by_email["customer_id"] == customer
