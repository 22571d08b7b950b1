"""Snapshots of contacts (services/common/snapshots.py, services/contacts/contact_snapshots.py):
one crm.contact.snapshot.v1 per contact, tombstones included, staged in the outbox page by page;
and the contacts service's own consumer of crm.orders.v1 on order snapshots."""
from __future__ import annotations

import asyncio
import uuid

import jsonschema
import pytest
from sqlalchemy import func, select

from services.common.event_catalog import envelope_schema
from services.common.events import build_event
from services.common.snapshots import main, run, stage_snapshots
from services.contacts.contact_snapshots import SNAPSHOTS
from services.contacts.event_schemas import CONTACT_EVENTS
from services.contacts.models import ContactRow, kernel
from services.contacts.app import create_app
from tests.common.kafka_tools import events_of, read_topic
from tests.conftest import deliver as deliver_events
from tests.conftest import running_app, service_settings
from tests.conftest import staged_events as staged

SNAPSHOT = "crm.contact.snapshot.v1"
SCHEMA = envelope_schema(next(event for event in CONTACT_EVENTS if event.type == SNAPSHOT))


async def create(client, **body) -> dict:
    response = await client.post("/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def stage(client, batch_size: int) -> dict[str, int]:
    ctx = client.app.state.ctx
    return await stage_snapshots(ctx.engine, SNAPSHOTS, topic=ctx.topic, batch_size=batch_size)


async def test_one_snapshot_per_contact_at_its_version_tombstones_included(contacts):
    edited = await create(contacts, given_name="Sara", emails=["sara@example.com"])
    assert (await contacts.patch(f"/v1/contacts/{edited['id']}", json={"tags": ["vip"]})).status_code == 200
    survivor = await create(contacts, given_name="Reza", emails=["reza@example.com"])
    absorbed = await create(contacts, given_name="Reza K", phones=["+989121234567"])
    merged = await contacts.post(f"/v1/contacts/{survivor['id']}/merge", json={"contact_ids": [absorbed["id"]]})
    assert merged.status_code == 200, merged.text
    erased = await create(contacts, given_name="Ali", emails=["ali@example.com"])
    assert (await contacts.post(f"/v1/contacts/{erased['id']}/erase", json={"reason": "asked"})).status_code < 300
    plain = await create(contacts, family_name="Karimi")
    before = len(await staged(contacts))

    assert await stage(contacts, batch_size=2) == {"contact": 5}  # pages of 2, 2 and 1

    events = await staged(contacts)
    snapshots = events[before:]
    assert {e["type"] for e in snapshots} == {SNAPSHOT} and len(events) == before + 5
    by_id = {e["aggregateid"]: e for e in snapshots}
    assert sorted(by_id) == sorted(c["id"] for c in (edited, survivor, absorbed, erased, plain))
    assert [e["aggregateid"] for e in snapshots] == sorted(by_id)  # keyset order over ids
    async with contacts.app.state.ctx.session_factory() as session:
        versions = dict((await session.execute(select(ContactRow.id, ContactRow.version))).all())
    for contact_id, event in by_id.items():
        jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
        assert event["subject"] == contact_id and event["source"] == "/crm/contacts"
        assert event["sequence"] == event["data"]["contact"]["version"] == versions[contact_id]
    for contact in (edited, survivor, plain):
        assert by_id[contact["id"]]["data"]["contact"] == (await contacts.get(f"/v1/contacts/{contact['id']}")).json()
    assert by_id[edited["id"]]["sequence"] == 2
    tombstone = by_id[absorbed["id"]]["data"]["contact"]
    assert (tombstone["status"], tombstone["merged_into"], tombstone["phones"]) == \
        ("merged", survivor["id"], ["+989121234567"])
    gone = by_id[erased["id"]]["data"]["contact"]
    assert (gone["status"], gone["emails"], gone["given_name"]) == ("erased", [], None)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4, 50])
async def test_every_contact_once_whatever_the_page_size(contacts, batch_size):
    ids = sorted([(await create(contacts, given_name=f"C{i}"))["id"] for i in range(4)])
    assert await stage(contacts, batch_size) == {"contact": 4}
    assert [e["aggregateid"] for e in await staged(contacts, SNAPSHOT)] == ids


async def test_each_page_commits_on_its_own(contacts, monkeypatch):
    """A failure on the third page keeps the first two pages staged: one transaction per page."""
    ids = sorted([(await create(contacts, given_name=f"C{i}"))["id"] for i in range(5)])
    source = SNAPSHOTS.sources[0]
    calls = []

    async def failing_page(session, after, limit):
        calls.append(after)
        if len(calls) == 3:
            raise RuntimeError("database went away")
        return await source.read_page(session, after, limit)

    broken = type(SNAPSHOTS)(tables=SNAPSHOTS.tables, topic=SNAPSHOTS.topic,
                             sources=[type(source)(source.aggregatetype, failing_page)])
    ctx = contacts.app.state.ctx
    with pytest.raises(RuntimeError):
        await stage_snapshots(ctx.engine, broken, topic=ctx.topic, batch_size=2)
    assert calls == [None, (ids[1],), (ids[3],)]
    assert [e["aggregateid"] for e in await staged(contacts, SNAPSHOT)] == ids[:4]


async def test_the_command_reads_the_services_database_url(contacts, contacts_db, monkeypatch, capsys):
    for i in range(3):
        await create(contacts, given_name=f"C{i}")
    monkeypatch.setenv("CONTACTS_DATABASE_URL", contacts_db)
    assert await asyncio.to_thread(main, ["contacts", "--batch-size", "2"]) == 0
    assert "contacts: staged 3 snapshot events (3 contact)" in capsys.readouterr().out
    async with contacts.app.state.ctx.session_factory() as session:
        rows = (await session.execute(select(kernel.outbox.c.topic, kernel.outbox.c.aggregatetype, func.count())
                                      .where(kernel.outbox.c.type == SNAPSHOT)
                                      .group_by(kernel.outbox.c.topic, kernel.outbox.c.aggregatetype))).all()
    assert [tuple(row) for row in rows] == [("crm.contacts.v1", "contact", 3)]


@pytest.mark.broker
async def test_the_running_services_relay_publishes_the_snapshots_after_the_history(contacts_db, broker, unique,
                                                                                    monkeypatch):
    prefix = f"t{unique}."
    app = create_app(service_settings("contacts", contacts_db, broker["bootstrap"], kafka_topic_prefix=prefix,
                                      run_background_tasks=True, outbox_poll_interval_s=0.1))
    async with running_app(app) as client:
        ids = [(await create(client, given_name=f"C{i}"))["id"] for i in range(3)]
        assert (await client.patch(f"/v1/contacts/{ids[0]}", json={"tags": ["vip"]})).status_code == 200
        # The command is another process: its commits do not wake the relay, its poll finds them.
        monkeypatch.setenv("CONTACTS_DATABASE_URL", contacts_db)
        monkeypatch.setenv("KAFKA_TOPIC_PREFIX", prefix)
        assert await run("contacts", batch_size=2) == {"contact": 3}
        records = await read_topic(broker["bootstrap"], client.app.state.ctx.topic, expect=7)
    events = {event["id"]: (record.key.decode(), event) for record, event in zip(records, events_of(records))}
    per_contact: dict[str, list] = {}
    for key, event in events.values():
        assert key == event["subject"]
        per_contact.setdefault(key, []).append((event["type"].split(".")[2], event["sequence"]))
    assert per_contact == {ids[0]: [("created", 1), ("updated", 2), ("snapshot", 2)],
                           ids[1]: [("created", 1), ("snapshot", 1)], ids[2]: [("created", 1), ("snapshot", 1)]}


def order_snapshot(reference: dict, *, sequence: int, order_id: str | None = None, kind: str = "snapshot") -> dict:
    order_id = order_id or str(uuid.uuid4())
    order = {"id": order_id, "platform": "shop", "external_id": "x", "customer_id": None, "customer": reference,
             "status": "paid", "total": "10.00", "currency": "USD", "version": sequence}
    return build_event(service="orders", event_type=f"crm.order.{kind}.v1", subject=order_id, aggregate_id=order_id,
                       sequence=sequence, data={"order": order})


async def deliver(client, event) -> str:
    return (await deliver_events(client, "crm.orders.v1", event))[0]


async def test_order_snapshots_reach_the_customers_consumer_like_updates(contacts):
    placed = order_snapshot({"email": "old@example.com"}, sequence=1, kind="placed")
    assert await deliver(contacts, placed) == "applied"
    again = order_snapshot({"email": "old@example.com"}, sequence=1, order_id=placed["aggregateid"])
    assert await deliver(contacts, again) == "stale"  # that version of the order was applied already
    assert [e["type"] for e in await staged(contacts)] == ["crm.contact.created.v1"]

    unseen = order_snapshot({"email": "new@example.com", "external_id": "c-7"}, sequence=3)
    assert await deliver(contacts, unseen) == "applied"
    created = (await staged(contacts))[-1]["data"]["contact"]
    assert (created["emails"], created["external_ids"], created["lifecycle_stage"]) == \
        (["new@example.com"], [{"system": "shop", "id": "c-7"}], "customer")
