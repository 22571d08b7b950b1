"""Alert rules emit crm.interaction.alert.v1 once per breach, re-arm when the breach ends,
remember breaches across restarts, and are configured through settings."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from services.interactions import interaction_store
from services.interactions.alerts import check_open_tickets, evaluate_customers
from services.interactions.app import create_app
from services.interactions.interaction_record import Reference, new_interaction
from services.interactions.schemas import InteractionCreate
from services.interactions.settings import interaction_settings
from tests.conftest import running_app, service_settings
from tests.interactions.conftest import contact_event, contact_snapshot, feed_contacts, interactions_settings, staged

ALERT = "crm.interaction.alert.v1"
C1 = "00000000-0000-4000-8000-0000000000c1"


def ago(**delta) -> str:
    return (datetime.now(timezone.utc) - timedelta(**delta)).isoformat()


async def complain(client, customer: dict, **extra) -> dict:
    response = await client.post("/v1/interactions", json={"customer": customer, "type": "feedback",
                                                           "kind": "complaint", "channel": "email", **extra})
    assert response.status_code == 201, response.text
    return response.json()


async def answer_nps(client, customer_id: str, nps: int) -> None:
    response = await client.post("/v1/interactions", json={"customer": {"id": customer_id}, "type": "survey_response",
                                                           "channel": "email", "nps": nps})
    assert response.status_code == 201, response.text


async def alerts(client, rule: str | None = None) -> list[dict]:
    return [e for e in await staged(client, ALERT) if rule is None or e["data"]["alert"]["rule"] == rule]


async def test_three_complaints_in_a_week_alert_once(interactions):
    customer = str(uuid.uuid4())
    old = await complain(interactions, {"id": customer}, occurred_at=ago(days=8))  # outside the window
    first = [await complain(interactions, {"id": customer}, occurred_at=ago(days=d)) for d in (5, 2)]
    assert await alerts(interactions) == []
    third = await complain(interactions, {"id": customer})
    [alert] = await alerts(interactions)
    assert alert["subject"] == customer and alert["sequence"] == 1
    body = alert["data"]["alert"]
    assert (body["rule"], body["customer_id"], body["scope"]) == ("complaints", customer, customer)
    assert body["interaction_ids"] == [first[0]["id"], first[1]["id"], third["id"]] and old["id"] not in body["interaction_ids"]
    assert body["details"] == {"complaints": 3, "threshold": 3, "window_days": 7.0}
    for _ in range(3):
        await complain(interactions, {"id": customer})
    await complain(interactions, {"id": str(uuid.uuid4())})  # another customer's first
    assert len(await alerts(interactions)) == 1


async def test_a_complaints_breach_rearms_once_the_window_holds_fewer(interactions):
    ctx = interactions.app.state.ctx
    customer, start = str(uuid.uuid4()), datetime.now(timezone.utc) - timedelta(days=30)

    async def complaints_at(*moments: datetime) -> None:
        fields = InteractionCreate(customer={"id": customer}, type="feedback", kind="complaint", channel="web")
        rows = [new_interaction(fields.model_copy(update={"occurred_at": m}), Reference(customer),
                                interaction_id=str(uuid.uuid4()), customer_id=customer, now=m) for m in moments]
        async with ctx.session_factory() as session, session.begin():
            await interaction_store.insert_many(session, rows)

    async def evaluate(at: datetime) -> int:
        async with ctx.session_factory() as session, session.begin():
            return await evaluate_customers(session, ctx, [customer], now=at)

    await complaints_at(start, start + timedelta(days=1), start + timedelta(days=2))
    assert await evaluate(start + timedelta(days=2)) == 1
    await complaints_at(start + timedelta(days=3))
    assert await evaluate(start + timedelta(days=3)) == 0  # the same breach
    assert await evaluate(start + timedelta(days=8, hours=1)) == 0  # two left in the window: re-armed
    await complaints_at(start + timedelta(days=8, hours=12), start + timedelta(days=9))
    assert await evaluate(start + timedelta(days=9)) == 1  # days 3, 8.5 and 9: a new breach
    assert len(await alerts(interactions, "complaints")) == 2


async def test_low_nps_alerts_once_until_a_higher_answer(interactions):
    customer, happy = str(uuid.uuid4()), str(uuid.uuid4())
    await answer_nps(interactions, happy, 7)
    await answer_nps(interactions, customer, 5)
    await answer_nps(interactions, customer, 3)  # still the same breach
    assert [a["data"]["alert"]["details"] for a in await alerts(interactions, "nps")] == [{"nps": 5, "threshold": 6}]
    await answer_nps(interactions, customer, 9)  # re-arms
    await answer_nps(interactions, customer, 6)  # a new breach
    assert [a["data"]["alert"]["details"]["nps"] for a in await alerts(interactions, "nps")] == [5, 6]


async def test_ticket_open_too_long_alerts_once_per_ticket_across_restarts(interactions_db):
    settings = interactions_settings(interactions_db)
    async with running_app(create_app(settings)) as client:
        ids = {}
        for name, hours, status in (("old", 49, "open"), ("younger", 47, "pending"), ("done", 60, "resolved")):
            response = await client.post("/v1/interactions", json={
                "customer": {"id": C1}, "type": "support_ticket", "channel": "email", "status": status,
                "occurred_at": ago(hours=hours)})
            ids[name] = response.json()["id"]
        ctx = client.app.state.ctx
        assert await check_open_tickets(ctx) == 1
        assert await check_open_tickets(ctx) == 0
        [alert] = await alerts(client, "ticket_open")
        assert alert["data"]["alert"]["scope"] == ids["old"] and alert["subject"] == C1
        assert alert["data"]["alert"]["details"]["threshold_hours"] == 48.0
    async with running_app(create_app(settings)) as client:  # a restart remembers the breach
        ctx = client.app.state.ctx
        assert await check_open_tickets(ctx) == 0
        assert await check_open_tickets(ctx, now=datetime.now(timezone.utc) + timedelta(hours=2)) == 1
        assert [a["data"]["alert"]["scope"] for a in await alerts(client, "ticket_open")] == [ids["old"], ids["younger"]]


async def test_a_breach_survives_a_restart(interactions_db):
    settings = interactions_settings(interactions_db)
    customer = str(uuid.uuid4())
    async with running_app(create_app(settings)) as client:
        for _ in range(3):
            await complain(client, {"id": customer})
    async with running_app(create_app(settings)) as client:
        await complain(client, {"id": customer})
        assert len(await alerts(client)) == 1


async def test_rules_come_from_settings_and_the_environment(interactions_db, monkeypatch):
    settings = interactions_settings(interactions_db, interactions_alert_complaints=2,
                                     interactions_alert_nps_at_or_below=-1)
    async with running_app(create_app(settings)) as client:
        customer = str(uuid.uuid4())
        await complain(client, {"id": customer})
        await complain(client, {"id": customer})
        await answer_nps(client, customer, 0)
        assert [a["data"]["alert"]["rule"] for a in await alerts(client)] == ["complaints"]
    monkeypatch.setenv("INTERACTIONS_ALERT_TICKET_OPEN_HOURS", "4")
    monkeypatch.setenv("INTERACTIONS_ALERT_COMPLAINT_WINDOW_DAYS", "30")
    from_env = interaction_settings(service_settings("interactions", interactions_db))
    assert (from_env.interactions_alert_ticket_open_hours, from_env.interactions_alert_complaint_window_days,
            from_env.interactions_alert_complaints) == (4, 30, 3)


async def test_anonymous_complaints_alert_when_their_visitor_is_identified(interactions):
    for _ in range(3):
        await complain(interactions, {"visitor_id": "v-angry"})
    assert await alerts(interactions) == []  # nobody to alert about yet
    contact = contact_snapshot(visitors=["v-angry"])
    await feed_contacts(interactions, contact_event("created", contact))
    [alert] = await alerts(interactions)
    assert alert["data"]["alert"]["customer_id"] == contact["id"]


async def test_the_background_task_checks_tickets_on_its_own(interactions_db):
    settings = interactions_settings(interactions_db, run_background_tasks=True,
                                     interactions_alert_check_interval_s=0.1, outbox_max_backoff_s=0.5)
    async with running_app(create_app(settings)) as client:  # no broker: the relay just retries
        response = await client.post("/v1/interactions", json={"customer": {"id": C1}, "type": "support_ticket",
                                                               "channel": "phone", "occurred_at": ago(hours=72)})
        assert response.status_code == 201
        for _ in range(50):
            if await alerts(client, "ticket_open"):
                break
            await asyncio.sleep(0.1)
        assert [a["data"]["alert"]["scope"] for a in await alerts(client, "ticket_open")] == [response.json()["id"]]
