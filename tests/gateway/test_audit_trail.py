"""The audit trail: every write, erasure, export and key change, with the key id, its name, the
request id, the action and the customers touched; GET /v1/audit (audit:read) and the person's
data export. The services' entries reach the gateway through crm.audit.v1 (the consumer has its
own broker test below); here they are handed to the store as the consumer would."""
from __future__ import annotations

import asyncio
import types
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy.engine import make_url

from gateway import api_keys, audit_store
from gateway.gateway_consumer import GatewayConsumer
from gateway.metrics import GatewayMetrics
from services.common.audit import AUDIT_TOPIC, Caller, audit_events
from services.common.events import decode
from services.common.database import create_engine
from services.common.topics import ensure_topics
from tests.conftest import service_settings, staged_events
from tests.databases import POSTGRES_URL, _pg_dsn
from tests.gateway.conftest import auth, start_gateway

PROBLEM = "application/problem+json"


async def deliver_audit(gw, services: dict) -> None:
    """What the audit consumer does with the entries the services staged (twice: nothing doubles)."""
    for app in services.values():
        events = await staged_events(types.SimpleNamespace(app=app), topic=AUDIT_TOPIC)
        for _ in range(2):
            async with gw.ctx.engine.begin() as connection:
                await audit_store.insert_entries(connection, [audit_store.entry_from_event(e) for e in events])


async def key_id(gw, secret: str) -> str:
    return (await api_keys.find_by_prefix(engine=gw.ctx.engine, prefix=api_keys.parse_key(secret))).id


async def trail(gw, headers, **params) -> list[dict]:
    response = await gw.client.get("/v1/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_who_did_what_to_which_customer(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        frontend_secret = await gw.key("فرانت‌اند", "contacts:read", "contacts:write")
        shop_secret = await gw.key("shop", "orders:write")
        frontend, shop = auth(frontend_secret), auth(shop_secret)
        dpo = auth(await gw.key("dpo", "privacy:admin"))
        auditor = auth(await gw.key("auditor", "audit:read"))
        created = await gw.client.post("/v1/contacts", json={"given_name": "Sara", "emails": ["sara@example.com"]},
                                       headers={**frontend, "X-Request-ID": "req-create"})
        customer_id = created.json()["id"]
        await gw.client.patch(f"/v1/contacts/{customer_id}", json={"occupation": "chef"}, headers=frontend)
        order = await gw.client.post("/v1/orders", headers=shop, json={
            "platform": "shop", "external_id": "o-1", "customer": {"id": customer_id}, "currency": "IRR",
            "total": "1000", "lines": [{"sku": "a", "name": "A", "quantity": 1, "unit_price": "1000"}],
            "placed_at": "2026-01-01T10:00:00Z"})
        assert order.status_code == 201, order.text
        await deliver_audit(gw, all_services)

        entries = await trail(gw, auditor, customer_id=customer_id)
        assert [e["action"] for e in entries] == ["orders.post", "contacts.update", "contacts.create"]  # newest first
        create = entries[-1]
        assert (create["service"], create["key_id"], create["key_name"], create["request_id"]) == (
            "contacts", await key_id(gw, frontend_secret), "فرانت‌اند", "req-create")
        assert create["customer_ids"] == [customer_id]
        assert entries[1]["detail"] == {"fields": ["occupation"]}
        assert entries[0]["key_name"] == "shop" and entries[0]["resource"] == f"order:{order.json()['id']}"
        shop_id = await key_id(gw, shop_secret)
        assert [e["action"] for e in await trail(gw, auditor, key_id=shop_id)] == ["orders.post"]
        assert [e["action"] for e in await trail(gw, auditor, action="contacts.update")] == ["contacts.update"]
        later = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat()
        assert await trail(gw, auditor, since=later) == []

        # The person's export says who accessed their data, this export included.
        document = (await gw.client.get(f"/v1/customers/{customer_id}/export", headers=dpo)).json()
        assert [e["action"] for e in document["audit"]] == ["contacts.create", "contacts.update", "orders.post",
                                                            "customers.export"]
        assert document["audit"][-1]["key_name"] == "dpo"

        erased = await gw.client.post(f"/v1/customers/{customer_id}/erase", headers=dpo, json={})
        assert erased.status_code == 202
        await deliver_audit(gw, all_services)
        [erasure] = await trail(gw, auditor, action="contacts.erase")
        assert erasure["customer_ids"] == [customer_id] and erasure["key_name"] == "dpo"


async def test_every_staged_entry_is_one_the_gateway_stores(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gw:
        headers = auth(await gw.key("frontend", "contacts:write", "interactions:write", "segments:admin"))
        contact = (await gw.client.post("/v1/contacts", json={"given_name": "Ali"}, headers=headers)).json()
        await gw.client.post("/v1/interactions", headers=headers, json={
            "customer": {"id": contact["id"]}, "type": "call", "channel": "phone", "direction": "inbound"})
        await gw.client.post("/v1/segments", json={"name": "static", "type": "static"}, headers=headers)
        for name, action in (("contacts", "contacts.create"), ("interactions", "interactions.create"),
                             ("segmentation", "segments.create")):
            [event] = await staged_events(types.SimpleNamespace(app=all_services[name]), topic=AUDIT_TOPIC)
            assert decode(orjson.dumps(event)) == event and event["type"] == "crm.audit.recorded.v1"
            entry = audit_store.entry_from_event(event)
            assert (entry["service"], entry["action"], entry["key_name"]) == (name, action, "frontend")
        with pytest.raises(ValueError):
            audit_store.entry_from_event({**event, "data": {"action": "x"}})


async def test_key_changes_are_recorded_and_the_trail_needs_audit_read(tmp_path):
    async with start_gateway(tmp_path, {}) as gw:
        admin_secret = await gw.key("ops", "admin")
        admin = auth(admin_secret)
        made = (await gw.client.post("/v1/admin/api-keys", json={"name": "shop", "scopes": ["orders:write"]},
                                     headers={**admin, "X-Request-ID": "req-key"})).json()
        assert (await gw.client.delete(f"/v1/admin/api-keys/{made['id']}", headers=admin)).status_code == 204
        assert (await gw.client.delete(f"/v1/admin/api-keys/{made['id']}", headers=admin)).status_code == 204
        entries = await trail(gw, admin, limit=2)
        assert [(e["action"], e["resource"]) for e in entries] == [("api_keys.revoke", f"api_key:{made['id']}"),
                                                                    ("api_keys.create", f"api_key:{made['id']}")]
        assert entries[1]["key_id"] == await key_id(gw, admin_secret) and entries[1]["request_id"] == "req-key"
        assert entries[1]["detail"] == {"name": "shop", "prefix": made["prefix"], "scopes": ["orders:write"]}
        page = (await gw.client.get("/v1/audit", params={"limit": 2}, headers=admin)).json()
        rest = (await gw.client.get("/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]},
                                    headers=admin)).json()
        assert [e["action"] for e in rest["items"]] == ["api_keys.create"]  # the ops key, made by the test
        assert rest["items"][0]["key_name"] == "the test's operator" and rest["next_cursor"] is None

        frontend = auth(await gw.key("frontend", "contacts:read"))
        refused = await gw.client.get("/v1/audit", headers=frontend)
        assert refused.status_code == 403 and refused.json()["required_scope"] == "audit:read"
        assert (await gw.client.get("/v1/audit")).status_code == 401
        naive = await gw.client.get("/v1/audit", params={"since": "2026-01-01T00:00:00"}, headers=admin)
        assert naive.status_code == 422 and naive.headers["content-type"] == PROBLEM
        bad_cursor = await gw.client.get("/v1/audit", params={"cursor": "nope"}, headers=admin)
        assert bad_cursor.status_code == 422


async def test_an_entry_of_a_thousand_customers_or_more_is_split():
    ids = [f"c-{i}" for i in range(2500)]
    events = audit_events(service="contacts", action="contacts.export", customer_ids=ids + ids[:10],
                          caller=Caller("k", "n", "r"))
    assert [len(e["data"]["customer_ids"]) for e in events] == [1000, 1000, 500]
    assert len({e["id"] for e in events}) == 3 and {e["data"]["request_id"] for e in events} == {"r"}


@pytest.mark.broker
async def test_the_consumer_stores_each_entry_once_and_dead_letters_what_is_not_one(broker, tmp_path, unique):
    prefix = f"a{unique}."
    kafka = service_settings("gateway", "sqlite+aiosqlite:///unused", broker["bootstrap"], kafka_topic_prefix=prefix)
    await ensure_topics(broker["bootstrap"], [prefix + AUDIT_TOPIC, prefix + AUDIT_TOPIC + ".dlq"], partitions=2)
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    from gateway import migrate

    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    [event] = audit_events(service="orders", action="orders.post", customer_ids=["c-1"], caller=Caller("k", "n", "r"))
    producer = AIOKafkaProducer(bootstrap_servers=broker["bootstrap"])
    await producer.start()
    try:
        for payload in (orjson.dumps(event), b"not json", orjson.dumps(event)):  # a re-delivery, and poison
            await producer.send_and_wait(prefix + AUDIT_TOPIC, payload, key=b"audit:k")
    finally:
        await producer.stop()
    metrics = GatewayMetrics()
    task = asyncio.create_task(GatewayConsumer(engine=engine, kafka=kafka, metrics=metrics, audit=True, wake=None).run())
    try:
        for _ in range(300):
            if "crm_gateway_audit_entries_total{outcome=\"dead_lettered\"} 1.0" in metrics.render().decode() \
                    and (await audit_store.list_entries(engine, audit_store.AuditFilter()))[0]:
                break
            await asyncio.sleep(0.1)
        entries, _ = await audit_store.list_entries(engine, audit_store.AuditFilter(customer_ids=("c-1",)))
        assert [(e["id"], e["action"], e["service"]) for e in entries] == [(event["id"], "orders.post", "orders")]
        assert 'crm_gateway_audit_entries_total{outcome="dead_lettered"} 1.0' in metrics.render().decode()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="the PostgreSQL run of the suite")
async def test_the_store_on_postgresql(tmp_path):
    from gateway import migrate

    name = f"crm_t_gateway_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_pg_dsn(POSTGRES_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        events = audit_events(service="orders", action="orders.batch", customer_ids=["c-1", "c-2"],
                              caller=Caller("k", "n", "r"))
        for _ in range(2):  # a re-delivery inserts nothing
            async with engine.begin() as connection:
                await audit_store.insert_entries(connection, [audit_store.entry_from_event(e) for e in events])
        await audit_store.record(engine, audit_store.gateway_entry(Caller(None, "cli", None), "customers.export",
                                                                   ["c-2"]))
        entries, _ = await audit_store.list_entries(engine, audit_store.AuditFilter(customer_ids=("c-2",)))
        assert [e["action"] for e in entries] == ["customers.export", "orders.batch"]
        assert [e["action"] for e in await audit_store.entries_of_customer(engine, ["c-1"])] == ["orders.batch"]
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
