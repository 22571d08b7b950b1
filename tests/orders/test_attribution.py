"""Attribution without calling contacts: the identity map kept from contact events attributes
orders at write time or, once the customer appears, later (crm.order.attributed.v1); orders
follow merges, unmerges and erasure. Contact events are fed to the consumer's handler through
apply_once, exactly as the running consumer applies them."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.common.events import build_event
from tests.conftest import deliver as deliver_events
from tests.orders.conftest import count_pending, order_body, outbox_events, post

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class Contacts:
    """Builds contact events the way the contacts service does (sequence = the contact's version)."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def event(self, kind: str, contact_id: str, *, emails=(), phones=(), external=(), status="active", **data) -> dict:
        version = self.versions[contact_id] = self.versions.get(contact_id, 0) + 1
        contact = {"id": contact_id, "status": status, "updated_at": (T0 + timedelta(seconds=version)).isoformat(),
                   "emails": list(emails), "phones": list(phones),
                   "external_ids": [{"system": s, "id": i} for s, i in external]}
        return build_event(service="contacts", event_type=f"crm.contact.{kind}.v1", subject=contact_id,
                           sequence=version, data={"contact": contact, **data})


@pytest.fixture
def contacts():
    return Contacts()


async def deliver(client, event) -> str:
    return (await deliver_events(client, "crm.contacts.v1", event))[0]


async def get(client, order_id) -> dict:
    return (await client.get(f"/v1/orders/{order_id}")).json()


def new_id() -> str:
    return str(uuid.uuid4())


async def test_a_known_email_attributes_at_once(orders, contacts):
    ali = new_id()
    await deliver(orders, contacts.event("created", ali, emails=["Ali@Example.com"]))
    order = await post(orders, order_body(customer={"email": "ali@EXAMPLE.com"}), 201)
    assert order["customer_id"] == ali and await count_pending(orders) == 0
    [event] = await outbox_events(orders)
    assert (event["type"], event["subject"]) == ("crm.order.placed.v1", ali)


async def test_an_unknown_email_waits_and_is_attributed_when_the_contact_appears(orders, contacts):
    order = await post(orders, order_body(customer={"email": "new@example.com", "phone": "09121234567"}), 201)
    other = await post(orders, order_body(customer={"phone": "+98 912 123 4567"}), 201)
    assert order["customer_id"] is None and await count_pending(orders) == 3
    customer = new_id()
    created = contacts.event("created", customer, emails=["new@example.com"], phones=["+989121234567"])
    assert await deliver(orders, created) == "applied"
    assert await deliver(orders, created) == "duplicate"
    for placed in (order, other):
        now = await get(orders, placed["id"])
        assert (now["customer_id"], now["version"]) == (customer, 2) and now["attributed_at"]
    attributed = [e for e in await outbox_events(orders) if e["type"] == "crm.order.attributed.v1"]
    assert len(attributed) == 2
    assert {(e["subject"], e["sequence"], e["data"]["reason"], e["data"]["previous_customer_id"]) for e in attributed} \
        == {(customer, 2, "reference_resolved", None)}
    assert await count_pending(orders) == 0


async def test_the_platform_customer_id_wins_over_email_and_phone(orders, contacts):
    by_email, by_external = new_id(), new_id()
    await deliver(orders, contacts.event("created", by_email, emails=["shared@example.com"]))
    await deliver(orders, contacts.event("created", by_external, external=[("shop", "c-77")]))
    order = await post(orders, order_body(customer={"email": "shared@example.com", "external_id": "c-77"}), 201)
    assert order["customer_id"] == by_external
    elsewhere = await post(orders, order_body(platform="other", customer={"email": "shared@example.com",
                                                                            "external_id": "c-77"}), 201)
    assert elsewhere["customer_id"] == by_email  # c-77 is the shop's id, not the other platform's


async def test_a_guest_order_waits_until_a_later_post_names_the_customer(orders, contacts):
    body = order_body("pos-1", platform="pos", channel="store")
    guest = await post(orders, body, 201)
    assert guest["customer_id"] is None and await count_pending(orders) == 0
    mina = new_id()
    await deliver(orders, contacts.event("created", mina, emails=["mina@example.com"]))
    assert (await get(orders, guest["id"]))["customer_id"] is None
    named = await post(orders, {**body, "customer": {"email": "mina@example.com"}}, 200)
    assert (named["customer_id"], named["version"]) == (mina, 3)  # updated (the reference), then attributed
    assert [e["type"].split(".")[2] for e in await outbox_events(orders)] == ["placed", "updated", "attributed"]


async def test_orders_follow_merge_and_unmerge(orders, contacts):
    a, b = new_id(), new_id()
    await deliver(orders, contacts.event("created", a, emails=["a@example.com"]))
    await deliver(orders, contacts.event("created", b, emails=["b@example.com"]))
    of_a = await post(orders, order_body(customer={"email": "a@example.com"}))
    of_b = [await post(orders, order_body(customer={"email": "b@example.com"})) for _ in range(2)]
    await deliver(orders, contacts.event("merged", a, emails=["a@example.com", "b@example.com"],
                                         merged_contact_ids=[b], merge_ids=["m1"]))
    for order in of_b:
        moved = await get(orders, order["id"])
        assert (moved["customer_id"], moved["merged_from"], moved["version"]) == (a, b, 2)
    assert (await get(orders, of_a["id"]))["version"] == 1
    late = await post(orders, order_body(customer={"id": b}), 201)  # names the absorbed contact
    assert (late["customer_id"], late["merged_from"]) == (a, b)
    by_email = await post(orders, order_body(customer={"email": "b@example.com"}), 201)
    assert (by_email["customer_id"], by_email["merged_from"]) == (a, None)
    restored = contacts.event("created", b, emails=["b@example.com"])["data"]["contact"]
    await deliver(orders, contacts.event("unmerged", a, emails=["a@example.com"], restored_contact_id=b,
                                         merge_id="m1", restored_contact=restored))
    for order in [*of_b, late]:
        back = await get(orders, order["id"])
        assert (back["customer_id"], back["merged_from"]) == (b, None)
    assert (await get(orders, of_a["id"]))["customer_id"] == a
    reasons = [e["data"]["reason"] for e in await outbox_events(orders) if e["type"] == "crm.order.attributed.v1"]
    assert reasons == ["merged", "merged", "unmerged", "unmerged", "unmerged"]


async def test_chained_merges_unwind_one_by_one(orders, contacts):
    a, b, c = new_id(), new_id(), new_id()
    of = {x: await post(orders, order_body(customer={"id": x})) for x in (a, b, c)}
    await deliver(orders, contacts.event("merged", a, merged_contact_ids=[b], merge_ids=["m1"]))
    await deliver(orders, contacts.event("merged", c, merged_contact_ids=[a], merge_ids=["m2"]))
    owners = {x: ((o := await get(orders, of[x]["id"]))["customer_id"], o["merged_from"]) for x in of}
    assert owners == {a: (c, a), b: (c, a), c: (c, None)}
    assert (await post(orders, order_body(customer={"id": b}), 201))["customer_id"] == c
    await deliver(orders, contacts.event("unmerged", c, restored_contact_id=a, merge_id="m2",
                                         restored_contact=contacts.event("updated", a)["data"]["contact"]))
    owners = {x: ((o := await get(orders, of[x]["id"]))["customer_id"], o["merged_from"]) for x in of}
    assert owners == {a: (a, None), b: (a, b), c: (c, None)}
    await deliver(orders, contacts.event("unmerged", a, restored_contact_id=b, merge_id="m1",
                                         restored_contact=contacts.event("updated", b)["data"]["contact"]))
    owners = {x: ((o := await get(orders, of[x]["id"]))["customer_id"], o["merged_from"]) for x in of}
    assert owners == {a: (a, None), b: (b, None), c: (c, None)}


async def test_erasure_removes_personal_data_and_keeps_the_figures(orders, contacts):
    sara = new_id()
    await deliver(orders, contacts.event("created", sara, emails=["sara@example.com"], phones=["+989121112233"]))
    address = {"name": "Sara Ahmadi", "line1": "Valiasr 12", "city": "Tehran", "postal_code": "1234567890",
               "country": "IR", "phone": "09121112233"}
    order = await post(orders, order_body(customer={"email": "sara@example.com", "given_name": "Sara"},
                                          shipping_address=address, billing_address=address), 201)
    bystander = await post(orders, order_body(customer={"email": "someone@example.com"}), 201)
    await deliver(orders, contacts.event("erased", sara, status="erased", erasure_id="e1"))
    erased = await get(orders, order["id"])
    assert erased["customer"] is None and erased["customer_id"] == sara
    kept = {k: v for k, v in erased["shipping_address"].items() if v is not None}
    assert kept == {"country": "IR"} and erased["billing_address"] == erased["shipping_address"]
    assert (erased["total"], erased["lines"], erased["placed_at"]) == (order["total"], order["lines"], order["placed_at"])
    assert erased["personal_data_erased_at"] and erased["version"] == 2
    *_, last, confirmation = await outbox_events(orders)
    assert (last["type"], last["data"]["reason"]) == ("crm.order.updated.v1", "customer_erased")
    # Its word to the contacts service that this part of the erasure is done (the bystander's order is untouched).
    assert confirmation["type"] == "crm.order.erasure_completed.v1"
    assert (confirmation["subject"], confirmation["aggregateid"]) == (sara, "erasure:e1")
    assert {k: confirmation["data"][k] for k in ("erasure_id", "contact_id", "service", "records_erased")} == {
        "erasure_id": "e1", "contact_id": sara, "service": "orders", "records_erased": 1}
    assert "sara" not in str(last["data"]).lower() and "valiasr" not in str(last["data"]).lower()
    assert (await get(orders, bystander["id"]))["customer"]["email"] == "someone@example.com"
    stored = await post(orders, order_body(customer={"email": "sara@example.com"}), 201)
    assert stored["customer_id"] is None  # her email no longer resolves to her


async def test_an_older_contact_snapshot_is_skipped(orders, contacts):
    x = new_id()
    old = contacts.event("created", x, emails=["x@example.com"])
    new = contacts.event("updated", x, emails=["x2@example.com"])
    assert await deliver(orders, new) == "applied"
    assert await deliver(orders, {**old, "id": str(uuid.uuid4())}) == "stale"
    order = await post(orders, order_body(customer={"email": "x@example.com"}), 201)
    assert order["customer_id"] is None


def test_a_visitor_id_is_the_least_specific_reference_key():
    from services.orders.order_record import reference_keys

    keys = reference_keys({"email": "A@example.com", "visitor_id": "v-1", "external_id": "c-9"}, "shop")
    assert keys == [("external", "shop", "c-9"), ("email", "", "a@example.com"), ("external", "visitor", "v-1")]
