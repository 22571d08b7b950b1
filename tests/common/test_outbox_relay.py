"""The outbox relay against a real broker: prompt, ordered per key, nothing lost while the
broker is down or when it restarts empty, and the PostgreSQL late-commit trap."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import insert, select

from deploy.dev_broker import start_broker, stop_broker
from services.common.events import build_event, utcnow
from services.common.outbox import add_event
from services.common.relay import BROKER_CHECK_S, BROKER_IDLE_CHECK_S, broker_check_due
from services.common.service_app import cancel_and_wait, make_relay
from services.common.topics import ensure_topics
from services.contacts.app import create_app
from services.contacts.models import kernel
from tests.common.kafka_tools import events_of, read_topic, wait_for_metric
from tests.conftest import free_port, running_app, service_settings
from tests.databases import POSTGRES_URL, _pg_dsn

pytestmark = pytest.mark.broker


def contacts_app(db_url: str, bootstrap: str, prefix: str, **overrides):
    return create_app(service_settings("contacts", db_url, bootstrap, kafka_topic_prefix=prefix,
                                       kafka_topic_partitions=3, **overrides))


async def write_contacts(client, count: int, updates: int, label: str = "c") -> dict[str, list[int]]:
    """Creates `count` contacts and updates each `updates` times; returns id -> versions written."""
    versions: dict[str, list[int]] = {}
    for i in range(count):
        created = (await client.post("/v1/contacts", json={"given_name": f"{label}{i}", "emails": [f"{label}{i}@example.com"]})).json()
        versions[created["id"]] = [1]
        for u in range(updates):
            updated = await client.patch(f"/v1/contacts/{created['id']}", json={"occupation": f"job {u}"})
            versions[created["id"]].append(updated.json()["version"])
    return versions


def per_key_sequences(events) -> dict[str, list[int]]:
    """Sequences per contact in arrival order. Delivery is at least once: a batch the broker
    half-acknowledged is sent again, so repeats of an event id are dropped before comparing."""
    out, seen = defaultdict(list), set()
    for event in events:
        if event["id"] not in seen:
            seen.add(event["id"])
            out[event["subject"]].append(event["sequence"])
    return dict(out)


async def test_relay_publishes_promptly_after_commit_in_order(contacts_db, broker, unique):
    app = contacts_app(contacts_db, broker["bootstrap"], f"t{unique}.", run_background_tasks=True,
                       outbox_poll_interval_s=30)  # only the commit signal can wake it in time
    async with running_app(app) as client:
        written = await write_contacts(client, 5, 3)
        topic = client.app.state.ctx.topic
        records = await read_topic(broker["bootstrap"], topic, expect=20)
        metrics = (await client.get("/metrics")).text
    events = events_of(records)
    assert per_key_sequences(events) == written
    assert all(record.key.decode() == event["subject"] for record, event in zip(records, events))
    assert "crm_outbox_pending_events 0.0" in metrics
    assert "crm_outbox_published_total 40.0" in metrics  # each write's event and its audit entry


async def test_broker_down_then_up_every_event_arrives_in_order(contacts_db, tmp_path, unique):
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    app = contacts_app(contacts_db, bootstrap, f"t{unique}.", run_background_tasks=True,
                       outbox_max_backoff_s=0.5)
    async with running_app(app) as client:
        written = await write_contacts(client, 4, 2)  # broker not running yet: relay keeps retrying
        # Twelve contact events, and their twelve audit entries (on crm.audit.v1).
        assert "crm_outbox_pending_events 24.0" in await wait_for_metric(client, "crm_outbox_pending_events 24.0")
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["broker"] == "unreachable"
        process = start_broker(port, log_path=str(tmp_path / "tansu.log"))
        try:
            records = await read_topic(bootstrap, client.app.state.ctx.topic, expect=12, timeout=30)
            assert per_key_sequences(events_of(records)) == written
            # Stop again mid-flow, write more, restart: Tansu kept nothing of the 12 it had
            # acknowledged, and the relay notices (its acknowledged offsets start again from 0): it
            # sends the whole retained outbox again, so the new log holds every event, in order.
            stop_broker(process)
            more = await write_contacts(client, 2, 1, label="d")
            process = start_broker(port, log_path=str(tmp_path / "tansu2.log"))
            records = await read_topic(bootstrap, client.app.state.ctx.topic, expect=16, timeout=30)
            assert per_key_sequences(events_of(records)) == {**written, **more}
            assert "crm_outbox_broker_losses_total 1.0" in (await client.get("/metrics")).text
        finally:
            stop_broker(process)


async def test_a_broker_restarted_empty_while_idle_gets_the_outbox_again(contacts_db, tmp_path, unique):
    """Nothing new to publish after the restart, so no acknowledgement can show the loss: the
    relay's periodic check of the partitions' end offsets does."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    process = start_broker(port, log_path=str(tmp_path / "tansu.log"))
    try:
        app = contacts_app(contacts_db, bootstrap, f"t{unique}.", run_background_tasks=True)
        async with running_app(app) as client:
            written = await write_contacts(client, 3, 1)
            batch = await client.post("/v1/contacts/batch", json={"items": [
                {"given_name": f"b{i}", "emails": [f"b{i}@example.com"]} for i in range(12)]})
            written.update({item["id"]: [1] for item in batch.json()["results"]})  # one transaction, one relay batch
            topic = client.app.state.ctx.topic
            assert len(await read_topic(bootstrap, topic, expect=18)) == 18
            await asyncio.sleep(BROKER_CHECK_S + 1)  # the check ran on the intact broker: no false alarm
            assert "crm_outbox_broker_losses_total 0.0" in (await client.get("/metrics")).text
            stop_broker(process)
            process = start_broker(port, log_path=str(tmp_path / "tansu2.log"))
            await ensure_topics(bootstrap, [topic], partitions=3)  # as make run or dev_broker would
            # Nothing was published since the last check: the next one comes BROKER_IDLE_CHECK_S after it.
            records = await read_topic(bootstrap, topic, expect=18, timeout=BROKER_IDLE_CHECK_S + 20)
            assert per_key_sequences(events_of(records)) == written
            assert "crm_outbox_broker_losses_total 1.0" in (await client.get("/metrics")).text
    finally:
        stop_broker(process)


def test_the_broker_is_checked_soon_after_publishing_and_seldom_while_idle():
    assert broker_check_due(100.0, None, 0.0)  # the first check at once
    assert not broker_check_due(100.0 + BROKER_CHECK_S - 0.1, 100.0, 100.5)
    assert broker_check_due(100.0 + BROKER_CHECK_S, 100.0, 100.5)  # published since the last check
    assert not broker_check_due(100.0 + BROKER_CHECK_S, 100.0, 99.0)  # nothing since: idle
    assert not broker_check_due(100.0 + BROKER_IDLE_CHECK_S - 0.1, 100.0, 99.0)
    assert broker_check_due(100.0 + BROKER_IDLE_CHECK_S, 100.0, 99.0)


@pytest.mark.skipif(not POSTGRES_URL, reason="SQLite has one writer: a transaction cannot commit behind another")
async def test_late_committing_transaction_is_not_skipped(contacts_db, broker, unique):
    """A row whose serial position was taken first but committed last is still published."""
    app = contacts_app(contacts_db, broker["bootstrap"], f"t{unique}.")
    async with running_app(app) as client:
        ctx = client.app.state.ctx
        relay = make_relay(ctx)

        def event(subject: str) -> dict:
            return build_event(service="contacts", event_type="crm.contact.updated.v1", subject=subject,
                               sequence=1, data={"contact": {"id": subject}})

        slow = ctx.session_factory()
        await slow.begin()
        await add_event(slow, ctx.tables, event("late"), aggregatetype="contact", topic=ctx.topic)  # position n
        async with ctx.session_factory() as fast, fast.begin():
            await add_event(fast, ctx.tables, event("early"), aggregatetype="contact", topic=ctx.topic)  # n+1
        assert await relay.publish_pending() == 1
        await slow.commit()
        await slow.close()
        assert await relay.publish_pending() == 1
        await relay._drop_producer()
        async with ctx.session_factory() as session:
            unpublished = (await session.execute(select(kernel.outbox.c.aggregateid)
                                                 .where(kernel.outbox.c.published_at.is_(None)))).all()
        records = await read_topic(broker["bootstrap"], ctx.topic, expect=2)
    assert unpublished == []
    assert sorted(e["subject"] for e in events_of(records)) == ["early", "late"]


async def test_rolled_back_change_publishes_nothing(contacts_db, broker, unique):
    app = contacts_app(contacts_db, broker["bootstrap"], f"t{unique}.")
    async with running_app(app) as client:
        ctx = client.app.state.ctx
        async with ctx.session_factory() as session:
            await session.begin()
            await session.execute(insert(kernel.outbox).values(
                id="x", aggregatetype="contact", aggregateid="a", type="t", topic=ctx.topic, payload="{}",
                created_at=utcnow(), attempts=0))
            await session.rollback()
        relay = make_relay(ctx)
        assert await relay.publish_pending() == 0
        await relay._drop_producer()


async def test_housekeeping_drops_old_published_events_and_expired_keys(contacts_db):
    async with running_app(contacts_app(contacts_db, "127.0.0.1:1", "unused.")) as client:
        ctx = client.app.state.ctx
        now = utcnow()
        async with ctx.session_factory() as session, session.begin():
            for position, published in ((1, now - timedelta(days=4)), (2, now - timedelta(hours=1)), (3, None)):
                await session.execute(insert(kernel.outbox).values(
                    position=position, id=f"e{position}", aggregatetype="contact", aggregateid="a", type="t",
                    topic=ctx.topic, payload="{}", created_at=now - timedelta(days=5), published_at=published,
                    attempts=1))
            for key, expires in (("old", now - timedelta(minutes=1)), ("live", now + timedelta(hours=1))):
                await session.execute(insert(kernel.idempotency_keys).values(
                    scope="s", key=key, fingerprint="f", state="done", created_at=now, expires_at=expires))
        await make_relay(ctx)._maybe_cleanup()
        async with ctx.session_factory() as session:
            left = (await session.execute(select(kernel.outbox.c.id).order_by(kernel.outbox.c.id))).scalars().all()
            keys = (await session.execute(select(kernel.idempotency_keys.c.key))).scalars().all()
    assert left == ["e2", "e3"] and keys == ["live"]


async def test_a_stopped_relay_hands_over_to_the_next(contacts_db, broker, unique):
    """On PostgreSQL the relay leads through an advisory lock; stopping it must release it."""
    app = contacts_app(contacts_db, broker["bootstrap"], f"t{unique}.")
    async with running_app(app) as client:
        ctx = client.app.state.ctx
        first = asyncio.create_task(make_relay(ctx).run())
        await write_contacts(client, 1, 0, label="first")
        await read_topic(broker["bootstrap"], ctx.topic, expect=1)
        await cancel_and_wait([first])
        if POSTGRES_URL:  # another database session can take the lock now
            other = await asyncpg.connect(_pg_dsn(contacts_db))
            try:
                assert await other.fetchval("SELECT pg_try_advisory_lock($1)", make_relay(ctx).lock_key)
                await other.fetchval("SELECT pg_advisory_unlock($1)", make_relay(ctx).lock_key)
            finally:
                await other.close()
        second = asyncio.create_task(make_relay(ctx).run())
        try:
            await write_contacts(client, 1, 0, label="second")
            records = await read_topic(broker["bootstrap"], ctx.topic, expect=2, timeout=10)
        finally:
            await cancel_and_wait([second])
    assert len({event["id"] for event in events_of(records)}) == 2
