"""An erasure as one process across services: started here, confirmed by every other service
(their crm.<aggregate>.erasure_completed.v1 events, fed through apply_once exactly as the
running consumer applies them), completed only when all have confirmed every erased contact."""
from __future__ import annotations

from sqlalchemy import func, select

from services.common.erasure import ErasureCompletedData
from services.common.events import build_event
from tests.conftest import deliver as deliver_events
from tests.conftest import staged_events

AGGREGATES = {"orders": "order", "interactions": "interaction", "segmentation": "profile"}


async def erased_events(client) -> list[dict]:
    return await staged_events(client, "crm.contact.erased.v1")


def confirmation(service: str, erased: dict, records: int = 1) -> dict:
    data = ErasureCompletedData(erasure_id=erased["data"]["erasure_id"], contact_id=erased["subject"], service=service,
                                records_erased=records, completed_at="2026-11-28T08:00:00Z")
    return build_event(service=service, event_type=f"crm.{AGGREGATES[service]}.erasure_completed.v1",
                       subject=erased["subject"], sequence=1, data=data.model_dump(),
                       aggregate_id=f"erasure:{data.erasure_id}")


async def deliver(client, event) -> str:
    return (await deliver_events(client, topic_of(event), event))[0]


def topic_of(event) -> str:
    return {"orders": "crm.orders.v1", "interactions": "crm.interactions.v1",
            "segmentation": "crm.segments.v1"}[event["data"]["service"]]


async def test_an_erasure_is_done_when_every_service_has_confirmed(contacts):
    created = (await contacts.post("/v1/contacts", json={"given_name": "مریم", "emails": ["maryam@example.com"]})).json()
    started = await contacts.post(f"/v1/customers/{created['id']}/erase", json={"reason": "asked by email",
                                                                                 "requested_by": "dpo@shop.example"})
    assert started.status_code == 202, started.text
    status = started.json()
    assert started.headers["location"] == f"/v1/privacy/erasures/{status['id']}"
    assert (status["status"], status["completed_at"], status["erased_contact_ids"]) == \
        ("in_progress", None, [created["id"]])
    assert {s["service"]: s["status"] for s in status["services"]} == {
        "contacts": "completed", "orders": "pending", "interactions": "pending", "segmentation": "pending"}
    assert (await contacts.get(f"/v1/contacts/{created['id']}")).status_code == 404
    [erased] = await erased_events(contacts)
    assert erased["data"]["erasure_id"] == status["id"]

    assert await deliver(contacts, confirmation("orders", erased, records=3)) == "applied"
    assert await deliver(contacts, confirmation("interactions", erased, records=0)) == "applied"
    midway = (await contacts.get(f"/v1/privacy/erasures/{status['id']}")).json()
    assert midway["status"] == "in_progress"
    assert {s["service"]: (s["status"], s["records_erased"]) for s in midway["services"]} == {
        "contacts": ("completed", 1), "orders": ("completed", 3), "interactions": ("completed", 0),
        "segmentation": ("pending", 0)}
    last = confirmation("segmentation", erased)
    assert await deliver(contacts, last) == "applied"
    assert await deliver(contacts, last) == "duplicate"
    done = (await contacts.get(f"/v1/privacy/erasures/{status['id']}")).json()
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert (done["reason"], done["requested_by"]) == ("asked by email", "dpo@shop.example")


async def test_a_merged_person_needs_each_service_to_confirm_every_contact(contacts):
    a = (await contacts.post("/v1/contacts", json={"given_name": "Ali", "emails": ["a@example.com"]})).json()
    b = (await contacts.post("/v1/contacts", json={"given_name": "Ali K", "emails": ["b@example.com"]})).json()
    assert (await contacts.post(f"/v1/contacts/{a['id']}/merge", json={"contact_ids": [b["id"]]})).status_code == 200
    status = (await contacts.post(f"/v1/customers/{b['id']}/erase")).json()
    assert status["contact_id"] == b["id"] and status["erased_contact_ids"] == sorted([a["id"], b["id"]])
    first, second = await erased_events(contacts)
    for service in AGGREGATES:
        await deliver(contacts, confirmation(service, first))
    # A replayed projection confirms again with a new event id: the first word stands.
    await deliver(contacts, confirmation("orders", first, records=9))
    halfway = (await contacts.get(f"/v1/privacy/erasures/{status['id']}")).json()
    assert halfway["status"] == "in_progress"
    assert {s["service"]: (s["contacts_confirmed"], s["records_erased"]) for s in halfway["services"]} == {
        "contacts": (2, 2), "orders": (1, 1), "interactions": (1, 1), "segmentation": (1, 1)}
    for service in AGGREGATES:
        await deliver(contacts, confirmation(service, second))
    assert (await contacts.get(f"/v1/privacy/erasures/{status['id']}")).json()["status"] == "completed"


async def test_unknown_erasures_and_second_erasures_are_404(contacts):
    missing = await contacts.get("/v1/privacy/erasures/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert (await contacts.post("/v1/customers/00000000-0000-4000-8000-000000000000/erase")).status_code == 404
    created = (await contacts.post("/v1/contacts", json={"given_name": "Sara"})).json()
    assert (await contacts.post(f"/v1/customers/{created['id']}/erase")).status_code == 202
    again = await contacts.post(f"/v1/customers/{created['id']}/erase")
    assert again.status_code == 404 and "already erased" in again.json()["detail"]
    assert len(await erased_events(contacts)) == 1


async def test_the_consumer_passes_over_other_events_without_writing(contacts):
    """It reads two busy topics for nothing but a few confirmations: anything else there must cost
    no transaction and leave no trace."""
    ctx = contacts.app.state.ctx
    interaction = build_event(service="interactions", event_type="crm.interaction.recorded.v1", subject="c1",
                              sequence=1, data={"interaction": {"id": "i1"}})
    assert await deliver_events(contacts, "crm.interactions.v1", interaction) == ["ignored"]
    erased = {"subject": "c1", "data": {"erasure_id": "e-1"}}
    assert await deliver(contacts, confirmation("interactions", erased)) == "applied"
    async with ctx.session_factory() as session:
        processed = (await session.execute(select(func.count()).select_from(ctx.tables.processed_events))).scalar()
    assert processed == 1
