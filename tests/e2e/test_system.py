"""The whole system as its users meet it: the broker, every service and the gateway run as real
processes (tests/e2e/conftest.py), and the tests act as a frontend team, an e-commerce
platform and a subscribing system, through the gateway and Kafka only."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

FRONTEND_SCOPES = ("contacts:read contacts:write orders:read interactions:read interactions:write "
                   "segments:admin")
EVENT_TOPICS = ("crm.contacts.v1", "crm.orders.v1", "crm.segments.v1")


def client_for(system, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=system.url("gateway"), headers={"Authorization": f"Bearer {key}"},
                             timeout=10.0, trust_env=False)


async def eventually(probe, *, timeout: float = 30.0, interval: float = 0.2):
    """Poll `probe` (async, returns a value or None) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


class Subscriber:
    """Another company's system: a plain Kafka consumer in a group of its own, from the beginning.

    Deliveries are at least once (docs/events.md): a relay that timed out waiting for the broker's
    acknowledgement sends its batch again, and a consumer that rejoins its group reads again from
    its last commit. So, as the docs tell a subscriber to, it skips an event id it has seen and
    counts it in `duplicates`; `events` holds each event once, in the order it first arrived."""

    def __init__(self, system) -> None:
        self.consumer = AIOKafkaConsumer(*(system.topic(t) for t in EVENT_TOPICS),
                                         bootstrap_servers=system.bootstrap, group_id=f"subscriber-{uuid.uuid4().hex}",
                                         auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=10)
        self.events: list[tuple[str, bytes, dict]] = []  # (topic, key, event) in arrival order
        self.seen: set[str] = set()
        self.duplicates = 0
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "Subscriber":
        await self.consumer.start()
        self.task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = orjson.loads(record.value)
                    if event["id"] in self.seen:
                        self.duplicates += 1
                    else:
                        self.seen.add(event["id"])
                        self.events.append((record.topic, record.key, event))

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()

    def of_type(self, event_type: str) -> list[dict]:
        return [event for _t, _k, event in self.events if event["type"] == event_type]


def order_body(n: int, email: str, currency: str = "IRR", total: str = "1250000") -> dict:
    return {"platform": "shop", "external_id": f"order-{n}", "customer": {"email": email}, "currency": currency,
            "lines": [{"sku": f"sku-{n}", "name": "زعفران", "category": "food", "quantity": 1, "unit_price": total}],
            "total": total, "placed_at": "2026-11-01T10:00:00Z"}


async def test_frontend_platform_and_subscriber(system):
    frontend = client_for(system, system.create_key("frontend", FRONTEND_SCOPES))
    shop = client_for(system, system.create_key("shop", "orders:write"))
    async with frontend, shop, Subscriber(system) as subscriber:
        # Frontend: customers in Persian and Arabic script, found again by a search typed with
        # the other script's letters and digits.
        people = [{"given_name": "محمدرضا", "family_name": "کریمی", "emails": ["mreza@example.ir"],
                   "phones": ["۰۹۱۲۱۲۳۴۵۶۷"]},
                  {"given_name": "فاطمة", "family_name": "الزهراء", "emails": ["fatima@example.ae"]},
                  {"given_name": "Sara", "family_name": "Smith", "emails": ["sara@example.com"]}]
        ids = []
        for person in people:
            created = await frontend.post("/v1/contacts", json=person)
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])
        found = await frontend.get("/v1/contacts", params={"q": "كريمي"})  # Arabic kaf and yeh
        assert [c["id"] for c in found.json()["items"]] == [ids[0]]
        segment = await frontend.post("/v1/segments", json={
            "name": "Repeat buyers", "rule": {"all": [{"field": "order_count", "op": "gte", "value": 2}]}})
        assert segment.status_code == 201, segment.text
        segment_id = segment.json()["id"]

        # E-commerce platform: two orders for the first customer, one for the second; its
        # retries (same Idempotency-Key, or the same order posted again) change nothing.
        posts = [(order_body(1, "mreza@example.ir"), "k1"), (order_body(2, "MReza@example.ir"), "k2"),
                 (order_body(3, "fatima@example.ae", "AED", "120.50"), "k3")]
        first = {}
        for body, key in posts:
            for _attempt in range(2):
                answer = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
                assert answer.status_code in (200, 201), answer.text
                first.setdefault(key, answer.json()["id"])
                assert answer.json()["id"] == first[key]
        again = await shop.post("/v1/orders", json=posts[0][0])  # no key: unique per (platform, external id)
        assert again.status_code == 200 and again.json()["id"] == first["k1"]
        assert (await shop.get("/v1/orders")).status_code == 403  # a platform's key only posts orders
        assert (await shop.get(f"/v1/contacts/{ids[0]}")).status_code == 403

        # The segment fills from the events, and the 360 view shows the whole story.
        async def members():
            page = (await frontend.get(f"/v1/segments/{segment_id}/members")).json()
            return [m["customer_id"] for m in page["items"]] or None

        assert await eventually(members) == [ids[0]]

        # The contacts service promotes the buyer from its own consumer of the order events, apart
        # from segmentation's: the membership above does not mean the promotion is there yet.
        async def promoted():
            contact = (await frontend.get(f"/v1/contacts/{ids[0]}")).json()
            return contact["lifecycle_stage"] == "customer" or None

        await eventually(promoted)
        view = (await frontend.get(f"/v1/customers/{ids[0]}")).json()
        assert view["complete"] is True and view["contact"]["lifecycle_stage"] == "customer"
        assert sorted(o["external_id"] for o in view["orders"]["items"]) == ["order-1", "order-2"]
        assert view["profile"]["order_count"] == 2
        assert [s["segment_id"] for s in view["segments"]] == [segment_id]

        # Subscriber: every order once, the membership, and per customer the events in order.
        async def settled():
            entered = subscriber.of_type("crm.segment.member_entered.v1")
            placed = subscriber.of_type("crm.order.placed.v1")
            return entered and len(placed) >= 3 and entered

        assert [e["data"]["customer_id"] for e in await eventually(settled)] == [ids[0]]
        assert sorted(e["data"]["order"]["external_id"] for e in subscriber.of_type("crm.order.placed.v1")) == \
            ["order-1", "order-2", "order-3"]
        sequences = defaultdict(list)
        for topic, key, event in subscriber.events:
            assert key.decode() == event["subject"]  # keyed by customer: one customer's events stay in order
            sequences[(topic, event["aggregateid"])].append(event["sequence"])
        for aggregate, seen in sequences.items():
            assert seen == sorted(seen), \
                f"{aggregate} arrived out of order: {seen} ({subscriber.duplicates} duplicates skipped)"
        contact_events = [e["type"] for _t, _k, e in subscriber.events if e["subject"] == ids[0]
                          and e["type"].startswith("crm.contact.")]
        assert contact_events[0] == "crm.contact.created.v1" and "crm.contact.updated.v1" in contact_events
        assert sequences[(system.topic("crm.contacts.v1"), ids[0])] == list(range(1, len(contact_events) + 1))


async def test_bad_requests_get_problems_not_answers(system):
    gateway = system.url("gateway")
    frontend_key = system.create_key("frontend", "contacts:read")
    async with httpx.AsyncClient(base_url=gateway, trust_env=False) as anonymous:
        assert (await anonymous.get("/v1/contacts")).status_code == 401
        assert (await anonymous.get("/v1/contacts", headers={"Authorization": "Bearer nope"})).status_code == 401
        frontend = {"Authorization": f"Bearer {frontend_key}"}
        assert (await anonymous.post("/v1/contacts", json={}, headers=frontend)).status_code == 403
        unknown = await anonymous.get("/v1/nothing-here", headers=frontend)
        assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
        huge = await anonymous.post("/v1/contacts", content=b"x" * (11 * 1024 * 1024), headers=frontend)
        assert huge.status_code == 413
    async with httpx.AsyncClient(trust_env=False) as direct:  # around the gateway
        skipped = await direct.get(system.url("contacts") + "/v1/contacts")
        assert skipped.status_code == 403 and skipped.json()["type"].endswith("/gateway-only")


async def test_a_service_killed_mid_run_loses_no_order_and_no_event(system):
    """Segmentation is down for the whole rush and the orders service is killed (SIGKILL) while
    orders are in flight. The gateway answers 503 for the dead service's paths and serves the
    rest; the platform retries with its Idempotency-Keys; once both are back, every order exists
    once, every one reached Kafka, and every profile counts them all."""
    frontend = client_for(system, system.create_key("frontend", FRONTEND_SCOPES))
    shop = client_for(system, system.create_key("shop", "orders:write"))
    total = 24
    async with frontend, shop, Subscriber(system) as subscriber:
        emails = [f"buyer{n}@example.com" for n in range(3)]
        ids = [(await frontend.post("/v1/contacts", json={"given_name": "Buyer", "emails": [email]})).json()["id"]
               for email in emails]
        system.kill("segmentation")
        posted: dict[str, str] = {}
        refusals: list[dict] = []

        async def platform(worker: int) -> None:
            for n in range(worker, total, 4):
                while True:  # what a platform does: the same order, the same key, until accepted
                    try:
                        answer = await shop.post("/v1/orders", json=order_body(n, emails[n % 3]),
                                                 headers={"Idempotency-Key": f"order-{n}"})
                    except httpx.TransportError:
                        answer = None
                    if answer is not None and answer.status_code in (200, 201):
                        posted[f"order-{n}"] = answer.json()["id"]
                        break
                    if answer is not None:  # down, slow, or its first try died with the service
                        assert answer.status_code in (503, 504, 409), answer.text
                        refusals.append(answer.json())
                    await asyncio.sleep(0.1)

        rush = asyncio.gather(*(platform(w) for w in range(4)))
        assert await eventually(lambda: asyncio.sleep(0, len(posted) >= 6), interval=0.01)
        system.kill("orders")
        down = await frontend.get("/v1/orders")
        assert down.status_code == 503 and down.json()["service"] == "orders"
        assert down.headers["content-type"] == "application/problem+json"
        assert (await frontend.get(f"/v1/contacts/{ids[0]}")).status_code == 200  # the rest is served
        view = (await frontend.get(f"/v1/customers/{ids[0]}")).json()
        assert "unavailable" in view["orders"] and "unavailable" in view["profile"]
        await asyncio.sleep(1.0)  # the platform keeps trying meanwhile
        system.start_process("orders")
        await asyncio.wait_for(rush, 60)
        assert any(r["status"] == 503 and r["service"] == "orders" for r in refusals)
        system.start_process("segmentation")

        listed = (await frontend.get("/v1/orders", params={"limit": 500})).json()["items"]
        assert sorted(o["external_id"] for o in listed) == sorted(posted) and len(listed) == total
        assert {o["id"] for o in listed} == set(posted.values())

        async def all_published():
            seen = {e["data"]["order"]["external_id"] for e in subscriber.of_type("crm.order.placed.v1")}
            return seen == set(posted) and seen

        assert await eventually(all_published, timeout=40)

        async def all_counted():
            profiles = [(await frontend.get(f"/v1/profiles/{cid}")).json() for cid in ids]
            counts = [p.get("order_count") for p in profiles]
            return counts if counts == [8, 8, 8] else None

        assert await eventually(all_counted, timeout=40) == [8, 8, 8]


async def test_erasure_is_carried_out_and_confirmed_by_every_service(system):
    frontend = client_for(system, system.create_key("frontend", FRONTEND_SCOPES))
    shop = client_for(system, system.create_key("shop", "orders:write"))
    dpo = client_for(system, system.create_key("dpo", "privacy:admin audit:read"))
    async with frontend, shop, dpo:
        created = await frontend.post("/v1/contacts", json={"given_name": "نرگس", "emails": ["narges@example.ir"]})
        customer_id = created.json()["id"]
        order = (await shop.post("/v1/orders", json=order_body(1, "narges@example.ir"))).json()
        said = await frontend.post("/v1/interactions", json={
            "customer": {"email": "narges@example.ir"}, "type": "call", "channel": "phone", "direction": "inbound",
            "subject": "درباره سفارش", "body": "narges@example.ir called about her order"})
        assert said.status_code == 201, said.text

        async def exported():
            document = (await dpo.get(f"/v1/customers/{customer_id}/export")).json()
            complete = all(document.get(part) for part in ("orders", "interactions", "profile"))
            # A service's audit entry reaches the gateway's store through crm.audit.v1, moments
            # after its change: wait for the create's as for the other parts.
            audited = any(entry["action"] == "contacts.create" for entry in document.get("audit", []))
            return document if complete and audited else None

        before = await eventually(exported)
        assert before, (await dpo.get(f"/v1/customers/{customer_id}/export")).text
        assert [o["id"] for o in before["orders"]] == [order["id"]] and len(before["interactions"]) == 1

        started = await dpo.post(f"/v1/customers/{customer_id}/erase", json={"reason": "customer asked"})
        assert started.status_code == 202, started.text

        async def finished():
            status = (await dpo.get(started.headers["location"])).json()
            return status if status["status"] == "completed" else None

        status = await eventually(finished)
        assert status, (await dpo.get(started.headers["location"])).json()
        assert {s["service"]: s["records_erased"] for s in status["services"]} == {
            "contacts": 1, "orders": 1, "interactions": 1, "segmentation": 1}
        assert (await dpo.get(f"/v1/customers/{customer_id}/export")).status_code == 404
        kept = (await frontend.get(f"/v1/orders/{order['id']}")).json()
        assert kept["customer"] is None and kept["total"] == order["total"]  # the figures stay, the person goes
        timeline = (await frontend.get(f"/v1/customers/{customer_id}/timeline")).json()["items"]
        assert "narges" not in str(timeline).lower()
        assert {"action": "contacts.create", "key_name": "frontend"}.items() <= before["audit"][0].items()

        # Nothing takes the person in again unnoticed: the suppression list (refuse, the default).
        again = await frontend.post("/v1/contacts", json={"emails": ["NARGES@example.ir"]})
        assert again.status_code == 409 and again.json()["type"].endswith("/identity-suppressed"), again.text

        # Who did what to her, from every service, through crm.audit.v1 into the gateway's store.
        async def audited():
            items = (await dpo.get("/v1/audit", params={"customer_id": customer_id})).json()["items"]
            actions = {(e["action"], e["key_name"]) for e in items}
            wanted = {("contacts.create", "frontend"), ("customers.export", "dpo"), ("contacts.erase", "dpo")}
            return items if wanted <= actions else None

        trail = await eventually(audited)
        assert trail, (await dpo.get("/v1/audit", params={"customer_id": customer_id})).json()
        assert all(e["request_id"] for e in trail) and trail == sorted(trail, key=lambda e: e["at"], reverse=True)
