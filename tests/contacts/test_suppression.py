"""Suppression after erasure: an erased person's email, phone and external id are kept only as a
keyed hash, and taking them in again (create, PATCH, batch, import, the customer of an order) is
refused or flagged, as CONTACTS_SUPPRESSION_MODE says; an operator can lift it."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from services.common.events import build_event
from services.common.settings import InsecureSettings
from services.contacts.app import create_app
from services.contacts.models import ContactRow, SuppressedIdentityRow
from services.contacts.suppression import FLAG_TAG, digest
from tests.conftest import TEST_SUPPRESSION_SECRET, deliver, running_app, service_settings
from tests.contacts.test_import_export import run_import

ERASED = {"given_name": "Leila", "emails": ["Leila@Example.com"], "phones": ["+989121234567"],
          "external_ids": [{"system": "shop", "id": "c-77"}]}
SUPPRESSED = "https://crm.example/problems/identity-suppressed"


async def erase_someone(contacts) -> str:
    created = (await contacts.post("/v1/contacts", json=ERASED)).json()
    erased = await contacts.post(f"/v1/customers/{created['id']}/erase", json={"reason": "asked to be forgotten"})
    assert erased.status_code == 202, erased.text
    return created["id"]


async def count_contacts(contacts) -> int:
    async with contacts.app.state.ctx.session_factory() as session:
        return (await session.execute(select(func.count()).select_from(ContactRow)
                                      .where(ContactRow.status == "active"))).scalar()


def order_event(customer: dict) -> dict:
    order_id = str(uuid.uuid4())
    order = {"id": order_id, "platform": "shop", "external_id": order_id, "customer_id": None, "customer": customer,
             "status": "placed", "total": "10.00", "currency": "USD", "version": 1}
    return build_event(service="orders", event_type="crm.order.placed.v1", subject=order_id, aggregate_id=order_id,
                       sequence=1, data={"order": order, "changed_fields": []})


async def deliver_order(contacts, customer: dict) -> str:
    return (await deliver(contacts, "crm.orders.v1", order_event(customer)))[0]


@pytest.fixture
async def flagging(contacts_db):
    async with running_app(create_app(service_settings("contacts", contacts_db,
                                                       contacts_suppression_mode="flag"))) as client:
        yield client


async def test_an_erasure_keeps_only_keyed_hashes_of_the_identities(contacts):
    await erase_someone(contacts)
    async with contacts.app.state.ctx.session_factory() as session:
        rows = (await session.execute(select(SuppressedIdentityRow))).scalars().all()
    assert sorted(row.kind for row in rows) == ["email", "external", "phone"]
    stored = str([(row.digest, row.kind, row.erasure_id) for row in rows])
    assert "leila" not in stored.lower() and "9121234567" not in stored and "c-77" not in stored
    assert digest(TEST_SUPPRESSION_SECRET, ("email", "", "leila@example.com")) in stored
    assert digest("another-secret-of-32-characters!", ("email", "", "leila@example.com")) not in stored


@pytest.mark.parametrize("body", [
    {"emails": ["LEILA@example.com"]},
    {"given_name": "L", "phones": ["۰۹۱۲۱۲۳۴۵۶۷"]},  # the same phone, in Persian digits
    {"external_ids": [{"system": "shop", "id": "c-77"}]},
])
async def test_refuse_mode_refuses_each_identity_again_and_writes_nothing(contacts, body):
    await erase_someone(contacts)
    refused = await contacts.post("/v1/contacts", json=body)
    assert refused.status_code == 409 and refused.json()["type"] == SUPPRESSED, refused.text
    assert "lift" in refused.json()["detail"] and await count_contacts(contacts) == 0
    other = (await contacts.post("/v1/contacts", json={"given_name": "Someone", "emails": ["x@example.com"]})).json()
    patched = await contacts.patch(f"/v1/contacts/{other['id']}", json={**body, "emails": ["x@example.com",
                                                                                           *body.get("emails", [])]})
    assert patched.status_code == 409 and patched.json()["type"] == SUPPRESSED


async def test_refuse_mode_in_a_batch_and_an_import_refuses_only_those_items(contacts):
    await erase_someone(contacts)
    batch = (await contacts.post("/v1/contacts/batch", json={"items": [
        {"emails": ["new@example.com"]}, {"given_name": "Leila", "emails": ["leila@example.com"]}]})).json()
    assert [r["status"] for r in batch["results"]] == ["created", "error"]
    assert batch["results"][1]["error"]["type"] == SUPPRESSED
    job = await run_import(contacts, b"given_name,email\nA,a@example.com\nLeila,leila@example.com\n")
    assert job["counts"] == {"created": 1, "updated": 0, "unchanged": 0, "failed": 1}
    assert "erased" in job["errors"][0]["reason"]
    assert await count_contacts(contacts) == 2


async def test_refuse_mode_keeps_an_order_of_an_erased_person_a_guest_sale(contacts):
    await erase_someone(contacts)
    assert await deliver_order(contacts, {"email": "leila@example.com", "given_name": "Leila"}) == "applied"
    assert await count_contacts(contacts) == 0  # no customer made, and nothing dead-lettered
    assert await deliver_order(contacts, {"email": "new.buyer@example.com"}) == "applied"
    assert await count_contacts(contacts) == 1


async def test_flag_mode_takes_them_in_tagged_for_review(flagging):
    await erase_someone(flagging)
    created = await flagging.post("/v1/contacts", json={"given_name": "Leila", "emails": ["leila@example.com"],
                                                        "tags": ["returning"]})
    assert created.status_code == 201 and created.json()["tags"] == ["returning", FLAG_TAG]
    batch = (await flagging.post("/v1/contacts/batch", json={"items": [{"phones": ["09121234567"]}]})).json()
    assert (await flagging.get(f"/v1/contacts/{batch['results'][0]['id']}")).json()["tags"] == [FLAG_TAG]
    await deliver_order(flagging, {"external_id": "c-77"})
    tagged = [c for c in (await flagging.get("/v1/contacts", params={"tag": FLAG_TAG})).json()["items"]]
    assert len(tagged) == 3
    plain = (await flagging.post("/v1/contacts", json={"emails": ["other@example.com"]})).json()
    assert plain["tags"] == []


async def test_an_operator_lifts_the_suppression_when_the_person_asks(contacts):
    await erase_someone(contacts)
    lifted = await contacts.post("/v1/privacy/suppressions/lift", json={"emails": ["LEILA@example.com"],
                                                                        "phones": ["09121234567"]})
    assert lifted.status_code == 200 and lifted.json() == {"lifted": 2}
    assert (await contacts.post("/v1/contacts", json={"emails": ["leila@example.com"],
                                                      "phones": ["09121234567"]})).status_code == 201
    still = await contacts.post("/v1/contacts", json={"external_ids": [{"system": "shop", "id": "c-77"}]})
    assert still.status_code == 409
    bad = await contacts.post("/v1/privacy/suppressions/lift", json={"emails": ["not-an-email"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "emails.0"


@pytest.mark.parametrize("secret", ["", "CHANGE_ME", "short"])
def test_the_service_refuses_to_start_without_a_real_suppression_secret(contacts_db, secret):
    with pytest.raises(InsecureSettings, match="CONTACTS_SUPPRESSION_SECRET"):
        create_app(service_settings("contacts", contacts_db, contacts_suppression_secret=secret))
