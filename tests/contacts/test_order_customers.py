"""The contacts service's consumer of crm.orders.v1: an order naming an unknown email, phone or
platform customer id creates the customer (once, however often and however concurrently the
events arrive); a lead who buys becomes a customer. Order events are fed to the handler through
apply_once, exactly as the running consumer applies them."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from services.common.events import build_event
from services.contacts.app import create_app
from services.contacts.models import ContactRow
from tests.conftest import deliver as deliver_events
from tests.conftest import running_app, service_settings
from tests.conftest import staged_events as staged


def order_event(customer=None, *, customer_id=None, platform="shop", kind="placed", sequence=1, order_id=None) -> dict:
    order_id = order_id or str(uuid.uuid4())
    order = {"id": order_id, "platform": platform, "external_id": "x", "customer_id": customer_id,
             "customer": customer, "status": "placed", "total": "10.00", "currency": "USD", "version": sequence}
    return build_event(service="orders", event_type=f"crm.order.{kind}.v1", subject=customer_id or order_id,
                       aggregate_id=order_id, sequence=sequence, data={"order": order, "changed_fields": []})


async def deliver(client, event) -> str:
    return (await deliver_events(client, "crm.orders.v1", event))[0]


async def all_contacts(client) -> list[dict]:
    async with client.app.state.ctx.session_factory() as session:
        return [row.data for row in (await session.execute(select(ContactRow).order_by(ContactRow.created_at))).scalars()]


async def test_an_unknown_reference_creates_one_customer(contacts):
    ref = {"email": "Reza@Example.com", "phone": "+989121234567", "external_id": "c-1", "given_name": "Reza",
           "family_name": "Karimi"}
    first = order_event(ref)
    assert await deliver(contacts, first) == "applied"
    assert await deliver(contacts, first) == "duplicate"
    assert await deliver(contacts, order_event(ref)) == "applied"  # another order of the same customer
    assert await deliver(contacts, order_event({"email": "reza@example.com"})) == "applied"
    [contact] = await all_contacts(contacts)
    assert (contact["lifecycle_stage"], contact["source"], contact["given_name"], contact["family_name"]) == \
        ("customer", "shop", "Reza", "Karimi")
    assert contact["emails"] == ["Reza@example.com"] and contact["phones"] == ["+989121234567"]
    assert contact["external_ids"] == [{"system": "shop", "id": "c-1"}]
    assert [e["type"] for e in await staged(contacts)] == ["crm.contact.created.v1"]


async def test_a_lead_found_by_email_becomes_a_customer_and_keeps_its_name(contacts):
    lead = (await contacts.post("/v1/contacts", json={"given_name": "Mina", "emails": ["mina@example.com"],
                                                      "source": "newsletter"})).json()
    await deliver(contacts, order_event({"email": "MINA@example.com", "phone": "09127654321", "given_name": "M."}))
    [contact] = await all_contacts(contacts)
    assert (contact["id"], contact["lifecycle_stage"], contact["given_name"], contact["source"]) == \
        (lead["id"], "customer", "Mina", "newsletter")
    assert contact["phones"] == ["+989127654321"] and contact["version"] == 2
    updated = (await staged(contacts))[-1]
    assert updated["type"] == "crm.contact.updated.v1"
    assert {"lifecycle_stage", "phones"} <= set(updated["data"]["changed_fields"])


async def test_an_attributed_order_promotes_a_lead_and_leaves_others(contacts):
    lead = (await contacts.post("/v1/contacts", json={"given_name": "L", "lifecycle_stage": "prospect"})).json()
    churned = (await contacts.post("/v1/contacts", json={"given_name": "C", "lifecycle_stage": "churned"})).json()
    await deliver(contacts, order_event(customer_id=lead["id"]))
    await deliver(contacts, order_event(customer_id=churned["id"]))
    await deliver(contacts, order_event(customer_id=str(uuid.uuid4())))  # unknown here: nothing to do
    stages = {c["id"]: (c["lifecycle_stage"], c["version"]) for c in await all_contacts(contacts)}
    assert stages == {lead["id"]: ("customer", 2), churned["id"]: ("churned", 1)}
    assert (await deliver(contacts, order_event(customer_id=lead["id"]))) == "applied"  # already a customer
    assert len(await staged(contacts)) == 3  # two created, one updated


async def test_a_merged_customer_id_promotes_the_survivor(contacts):
    a = (await contacts.post("/v1/contacts", json={"given_name": "A", "emails": ["a@example.com"]})).json()
    b = (await contacts.post("/v1/contacts", json={"given_name": "B", "emails": ["b@example.com"]})).json()
    assert (await contacts.post(f"/v1/contacts/{a['id']}/merge", json={"contact_ids": [b["id"]]})).status_code == 200
    await deliver(contacts, order_event(customer_id=b["id"]))
    assert (await contacts.get(f"/v1/contacts/{a['id']}")).json()["lifecycle_stage"] == "customer"


async def test_identities_of_two_contacts_promote_the_first_and_take_nothing_from_the_other(contacts):
    x = (await contacts.post("/v1/contacts", json={"emails": ["x@example.com"]})).json()
    y = (await contacts.post("/v1/contacts", json={"phones": ["+989121110000"]})).json()
    await deliver(contacts, order_event({"email": "x@example.com", "phone": "+989121110000", "external_id": "77"}))
    by_id = {c["id"]: c for c in await all_contacts(contacts)}
    assert len(by_id) == 2
    assert by_id[x["id"]]["lifecycle_stage"] == "customer" and by_id[x["id"]]["phones"] == []
    assert by_id[x["id"]]["external_ids"] == [{"system": "shop", "id": "77"}]
    assert by_id[y["id"]]["lifecycle_stage"] == "lead"


async def test_a_guest_order_and_other_events_change_nothing(contacts):
    await deliver(contacts, order_event(None))
    other = build_event(service="orders", event_type="crm.something.v1", subject="s", sequence=1, data={})
    await deliver(contacts, other)
    assert await all_contacts(contacts) == [] and await staged(contacts) == []


@pytest.fixture
async def two_replicas(contacts_db):
    async with running_app(create_app(service_settings("contacts", contacts_db))) as a, \
            running_app(create_app(service_settings("contacts", contacts_db))) as b:
        yield a, b


async def test_orders_of_one_new_customer_handled_at_once_make_one_contact(two_replicas):
    a, b = two_replicas
    events = [order_event({"email": "same@example.com", "phone": "+989120001111"}) for _ in range(8)]
    outcomes = await asyncio.gather(*[deliver(a if i % 2 else b, event) for i, event in enumerate(events)])
    assert outcomes == ["applied"] * 8
    async with a.app.state.ctx.session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(ContactRow))).scalar() == 1
    assert [e["type"] for e in await staged(a)] == ["crm.contact.created.v1"]


async def test_an_order_naming_a_visitor_gives_the_new_customer_that_visitor(contacts):
    assert await deliver(contacts, order_event({"email": "v@example.com", "visitor_id": "v-77"})) == "applied"
    [contact] = await all_contacts(contacts)
    assert {"system": "visitor", "id": "v-77"} in contact["external_ids"]
