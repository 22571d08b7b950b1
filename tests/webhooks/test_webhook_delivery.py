"""Deliveries to a real HTTP server: signed per Standard Webhooks (checked with the standardwebhooks
package's own verifier), retried with backoff for 24 h on a clock the test moves, one customer's
events in order, the subscription disabled after a day of failures with an event saying so, and a
queue that survives a restart. Events are queued as the consumer queues them (webhook_queue); the
consumer itself meets the broker in test_webhook_consumer.py."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from gateway import webhook_queue
from gateway.webhook_policy import RetryPolicy
from gateway.webhook_sender import WebhookSender
from services.common.database import create_engine
from services.common.events import encode
from tests.webhooks.conftest import contact_event, wait_until


async def subscribe(gw, url: str, **body) -> dict:
    response = await gw.client.post("/v1/webhooks", json={"url": url, "event_types": ["*"], **body},
                                    headers=gw.admin)
    assert response.status_code == 201, response.text
    return response.json()


async def queue(engine, *events: dict, now=None) -> int:
    from services.common.events import utcnow

    async with engine.begin() as connection:
        return await webhook_queue.queue_events(connection, [(encode(e).decode(), e) for e in events],
                                                now=now or utcnow())


async def deliveries(gw, webhook_id: str, **params) -> list[dict]:
    response = await gw.client.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params, headers=gw.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def sender_for(gw, client, clock=None, **policy) -> WebhookSender:
    kwargs = {"clock": clock} if clock else {}
    return WebhookSender(engine=gw.ctx.engine, client=client, policy=RetryPolicy(**policy), allow_private=True,
                         **kwargs)


async def test_a_delivery_is_signed_per_standard_webhooks(gateway, receiver):
    hook = await subscribe(gateway, receiver.url + "/hook", event_types=["crm.contact.*"])
    event = contact_event("c-1", 1, given_name="سارا")
    assert await queue(gateway.ctx.engine, event, contact_event("c-1", 2, event_type="crm.order.created.v1")) == 1
    async with httpx.AsyncClient() as client:
        assert await sender_for(gateway, client).send_due() == 1
    (got,) = receiver.on("/hook")
    payload = Webhook(hook["secret"]).verify(got.body, got.headers)  # raises unless signed with the secret
    assert payload["id"] == event["id"] and payload["data"]["contact"]["given_name"] == "سارا"
    assert got.headers["content-type"] == "application/json"
    (logged,) = await deliveries(gateway, hook["id"])
    assert logged["id"] == got.headers["webhook-id"]
    assert (logged["status"], logged["attempts"], logged["last_status_code"]) == ("delivered", 1, 204)
    forged = Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    try:
        forged.verify(got.body, got.headers)
        raise AssertionError("another secret verified the delivery")
    except Exception as exc:
        assert "signature" in str(exc).lower()


async def test_failures_back_off_exponentially_for_24_hours_then_the_subscription_is_disabled(
        gateway, receiver, clock):
    failing = await subscribe(gateway, receiver.url + "/down")
    await subscribe(gateway, receiver.url + "/ops", event_types=["crm.webhook.*"])  # told of the disabling
    receiver.statuses["/down"] = [500]
    await queue(gateway.ctx.engine, contact_event("c-1", 1, at=clock.now + timedelta(seconds=1)), now=clock.now)
    clock.advance(seconds=1)
    async with httpx.AsyncClient() as client:
        sender = sender_for(gateway, client, clock)
        first = clock.now
        attempts_at = []
        while True:
            assert await sender.send_due() == 1
            attempts_at.append(clock.now)
            assert len(attempts_at) < 100
            (row,) = await deliveries(gateway, failing["id"])
            if row["status"] != "pending":
                break
            due = _parse(row["next_attempt_at"])
            assert await sender.send_due() == 0  # not before it is due
            assert abs(await sender.seconds_until_due() - min(60.0, (due - clock.now).total_seconds())) < 0.01
            clock.now = due
    delays = [(b - a).total_seconds() for a, b in zip(attempts_at, attempts_at[1:])]
    assert 4.5 <= delays[0] <= 5 and 9 <= delays[1] <= 10 and 18 <= delays[2] <= 20  # doubling, with jitter
    assert max(delays) <= 3600
    assert attempts_at[-1] - first >= timedelta(hours=24)  # at least a day of retries
    assert len(receiver.on("/down")) == len(attempts_at)
    (row,) = await deliveries(gateway, failing["id"])
    assert row["status"] == "failed" and row["attempts"] == len(attempts_at) and row["last_status_code"] == 500
    hook = (await gateway.client.get(f"/v1/webhooks/{failing['id']}", headers=gateway.admin)).json()
    assert hook["status"] == "disabled" and "failed since" in hook["disabled_reason"]

    async with httpx.AsyncClient() as client:  # the event saying so, to the subscription that takes it
        assert await sender_for(gateway, client, clock).send_due() == 1
    (said,) = receiver.on("/ops")
    told = orjson.loads(said.body)  # signed with the clock's time, a day ahead: verify() would call it too new
    assert told["type"] == "crm.webhook.disabled.v1" and told["data"]["webhook"]["id"] == failing["id"]
    audit = await gateway.client.get("/v1/audit", params={"action": "webhooks.disable"},
                                     headers={"Authorization": f"Bearer {await gateway.key('a', 'audit:read')}"})
    assert [e["resource"] for e in audit.json()["items"]] == [f"webhook:{failing['id']}"]

    # Later events are queued for nobody while it is disabled; enabled again, it takes new ones.
    await queue(gateway.ctx.engine, contact_event("c-1", 2, at=clock.now + timedelta(seconds=1)), now=clock.now)
    assert len(await deliveries(gateway, failing["id"])) == 1
    receiver.statuses["/down"] = [200]
    await gateway.client.patch(f"/v1/webhooks/{failing['id']}", json={"status": "enabled"}, headers=gateway.admin)
    clock.advance(seconds=5)
    await queue(gateway.ctx.engine, contact_event("c-1", 3, at=clock.now + timedelta(seconds=1)), now=clock.now)
    clock.advance(seconds=5)
    async with httpx.AsyncClient() as client:
        assert await sender_for(gateway, client, clock).send_due() == 1
    assert [d["status"] for d in await deliveries(gateway, failing["id"])] == ["delivered", "failed"]


def _parse(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_failing_customer_holds_back_only_its_own_later_events(gateway, receiver, clock):
    hook = await subscribe(gateway, receiver.url + "/hook")
    at = clock.now + timedelta(seconds=1)
    events = [contact_event("cust-a", 1, at=at), contact_event("cust-b", 1, at=at),
              contact_event("cust-a", 2, at=at), contact_event("cust-b", 2, at=at)]
    await queue(gateway.ctx.engine, *events, now=clock.now)
    receiver.fail_subjects.add('"subject":"cust-a"')
    async with httpx.AsyncClient() as client:
        sender = sender_for(gateway, client, clock)
        assert await sender.send_due() == 2  # the head of each customer's queue: a1 fails, b1 delivered
        assert await sender.send_due() == 1  # b2; a2 waits behind a1
        assert await sender.send_due() == 0
        clock.advance(seconds=6)
        receiver.fail_subjects.clear()
        assert await sender.send_due() == 1  # a1 again, delivered
        assert await sender.send_due() == 1  # then a2
    order = [(orjson.loads(r.body)["subject"], orjson.loads(r.body)["sequence"]) for r in receiver.on("/hook")]
    assert order == [("cust-a", 1), ("cust-b", 1), ("cust-b", 2), ("cust-a", 1), ("cust-a", 2)] or order == [
        ("cust-b", 1), ("cust-a", 1), ("cust-b", 2), ("cust-a", 1), ("cust-a", 2)]
    log = await deliveries(gateway, hook["id"])
    assert [d["status"] for d in log] == ["delivered"] * 4
    assert sorted(d["attempts"] for d in log) == [1, 1, 1, 2]
    page = await gateway.client.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"limit": 3},
                                    headers=gateway.admin)
    rest = await gateway.client.get(f"/v1/webhooks/{hook['id']}/deliveries",
                                    params={"limit": 3, "cursor": page.json()["next_cursor"]}, headers=gateway.admin)
    assert len(page.json()["items"]) == 3 and len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None


async def test_filters_and_what_is_queued(gateway, receiver):
    vip = "5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d10"
    one = await subscribe(gateway, receiver.url + "/one", customer_id="5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d99")
    seg = await subscribe(gateway, receiver.url + "/seg", segment_id=vip, event_types=["crm.contact.*",
                                                                                       "crm.segment.*"])
    entered = {"specversion": "1.0", "id": "e-enter", "source": "/crm/segmentation",
               "type": "crm.segment.member_entered.v1", "subject": "c-in", "time": contact_event("x", 1)["time"],
               "sequence": 1, "aggregateid": f"{vip}:c-in", "data": {"segment_id": vip, "customer_id": "c-in"}}
    old = contact_event("c-in", 1, at=_parse(one["created_at"]) - timedelta(minutes=1))
    events = [entered, contact_event("c-in", 2), contact_event("c-out", 1), old,
              contact_event("5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d99", 1)]
    assert await queue(gateway.ctx.engine, *events) == 3
    assert await queue(gateway.ctx.engine, *events) == 3  # counted, but a re-delivery inserts nothing
    assert [d["event_type"] for d in await deliveries(gateway, seg["id"])] == [
        "crm.contact.updated.v1", "crm.segment.member_entered.v1"]
    assert [d["customer_id"] for d in await deliveries(gateway, one["id"])] == ["5f0c3e0e-8a4b-4f7e-9a4e-6f1f3c2b9d99"]


async def test_an_erasure_clears_what_the_queue_holds_on_the_customer(gateway, receiver):
    hook = await subscribe(gateway, receiver.url + "/hook")
    await queue(gateway.ctx.engine, contact_event("c-1", 1, email="x@example.com"),
                contact_event("c-1", 2, event_type="crm.contact.erased.v1"))
    statuses = {d["event_type"]: d["status"] for d in await deliveries(gateway, hook["id"])}
    assert statuses == {"crm.contact.updated.v1": "failed", "crm.contact.erased.v1": "pending"}
    async with httpx.AsyncClient() as client:
        assert await sender_for(gateway, client).send_due() == 1
    assert [orjson.loads(r.body)["type"] for r in receiver.received] == ["crm.contact.erased.v1"]


async def test_the_queue_survives_a_restart_and_the_sender_sleeps_until_woken(tmp_path, gateway_db, receiver):
    from tests.gateway.conftest import auth, start_gateway

    async with start_gateway(tmp_path, {}, database_url=gateway_db, webhooks_allow_private_targets=True) as gw:
        gw.admin = auth(await gw.key("ops", "webhooks:admin"))
        hook = await subscribe(gw, receiver.url + "/hook")
        await queue(gw.ctx.engine, contact_event("c-1", 1))
    # The gateway is gone; a new one on the same database sends what was queued.
    engine = create_engine(gateway_db)
    try:
        async with httpx.AsyncClient() as client:
            sender = WebhookSender(engine=engine, client=client, policy=RetryPolicy(), allow_private=True,
                                   idle_check_s=60.0)
            task = asyncio.create_task(sender.run())
            try:
                await wait_until(lambda: len(receiver.received) == 1)
                for _ in range(100):  # the receiver may answer before the sender has recorded it as delivered
                    if await sender.seconds_until_due() == 60.0:
                        break
                    await asyncio.sleep(0.05)
                assert await sender.seconds_until_due() == 60.0  # nothing due: it sleeps the whole idle check
                await asyncio.sleep(0.3)
                assert len(receiver.received) == 1
                await queue(engine, contact_event("c-2", 1))
                sender.wake()  # what the consumer does after queueing
                await wait_until(lambda: len(receiver.received) == 2, timeout=2.0)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        await engine.dispose()
    assert {orjson.loads(r.body)["subject"] for r in receiver.received} == {"c-1", "c-2"}
    assert hook["id"]
