"""The Segment-compatible tracking API through the gateway, with the four services in-process:
what each call writes where, write-key Basic auth and its scope, Segment's size limits, and bad
input refused whole (nothing written). Attribution across services (the interactions attached to
the contact) needs the event flow: tests/e2e/test_segment_sdk.py."""
from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from tests.gateway.conftest import auth, start_gateway

PROBLEM = "application/problem+json"


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
async def gw(all_services, tmp_path):
    async with start_gateway(tmp_path, all_services) as gateway:
        gateway.write = basic(await gateway.key("site", "tracking:write"))
        gateway.reader = auth(await gateway.key("reader", "contacts:read", "interactions:read", "orders:read"))
        yield gateway


async def contacts(gw) -> list[dict]:
    return (await gw.client.get("/v1/contacts", headers=gw.reader)).json()["items"]


async def interactions(gw) -> list[dict]:
    return (await gw.client.get("/v1/interactions", headers=gw.reader)).json()["items"]


async def orders(gw) -> list[dict]:
    return (await gw.client.get("/v1/orders", headers=gw.reader)).json()["items"]


async def test_identify_upserts_the_contact_from_its_traits(gw):
    body = {"userId": "u-42", "anonymousId": "anon-1", "traits": {
        "email": "Sara@Example.com", "firstName": "سارا", "lastName": "محمدی", "phone": "09121234567",
        "plan": "gold", "company": {"name": "Acme"}, "logins": 3}, "timestamp": "2026-12-01T10:00:00Z",
        "messageId": "m-1"}
    response = await gw.client.post("/v1/identify", json=body, headers=gw.write)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    (contact,) = await contacts(gw)
    assert (contact["given_name"], contact["family_name"]) == ("سارا", "محمدی")
    assert contact["emails"] == ["Sara@example.com"] and contact["phones"] == ["+989121234567"]
    assert contact["attributes"] == {"plan": "gold", "company_name": "Acme", "logins": 3}
    assert {(e["system"], e["id"]) for e in contact["external_ids"]} == {
        ("segment", "u-42"), ("visitor", "segment-user:u-42"), ("visitor", "anon-1")}
    again = await gw.client.post("/v1/identify", json={"userId": "u-42", "traits": {"plan": "platinum"}},
                                 headers=gw.write)
    assert again.status_code == 200
    (contact,) = await contacts(gw)
    assert contact["attributes"]["plan"] == "platinum" and contact["given_name"] == "سارا"


async def test_track_page_and_screen_become_interactions_and_order_completed_an_order(gw):
    calls = [
        ("/v1/track", {"anonymousId": "anon-9", "event": "Product Viewed", "properties": {"sku": "A-1", "price": 9.5},
                       "context": {"page": {"url": "https://shop.example/p/a-1"}}}),
        ("/v1/page", {"anonymousId": "anon-9", "name": "Home", "properties": {"url": "https://shop.example/"}}),
        ("/v1/screen", {"userId": "u-7", "name": "Cart"}),
        ("/v1/track", {"userId": "u-7", "anonymousId": "anon-9", "event": "Order Completed", "properties": {
            "order_id": "o-100", "currency": "USD", "shipping": 5, "tax": 1.5, "discount": 2, "coupon": "YALDA",
            "products": [{"product_id": "A-1", "name": "Tea", "price": 9.5, "quantity": 2, "category": "food"}]}}),
    ]
    for path, body in calls:
        response = await gw.client.post(path, json=body, headers=gw.write)
        assert response.status_code == 200, response.text
    recorded = sorted(await interactions(gw), key=lambda i: (i["type"], i["channel"] == "app"))
    assert [(i["type"], i["channel"], i["subject"]) for i in recorded] == [
        ("click", "web", "Product Viewed"), ("page_view", "web", "Home"), ("page_view", "app", "Cart")]
    click = recorded[0]
    assert click["customer"] == {"visitor_id": "anon-9"} and click["url"] == "https://shop.example/p/a-1"
    assert click["metadata"]["sku"] == "A-1" and click["metadata"]["segment_event"] == "Product Viewed"
    assert recorded[2]["customer"] == {"visitor_id": "segment-user:u-7"}
    (order,) = await orders(gw)
    assert (order["platform"], order["external_id"], order["currency"], order["total"]) == (
        "segment", "o-100", "USD", "23.50")
    assert order["customer"]["external_id"] == "u-7" and order["lines"][0]["sku"] == "A-1"


async def test_batch_answers_like_segment_and_a_retry_records_nothing_twice(gw):
    body = {"batch": [
        {"type": "identify", "userId": "u-1", "traits": {"email": "a@example.com"}, "messageId": "b-1"},
        {"type": "track", "userId": "u-1", "event": "Signed Up", "messageId": "b-2"},
        {"type": "alias", "userId": "u-1", "previousId": "anon-old", "messageId": "b-3"},
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}, "messageId": "b-4"},
    ], "context": {"library": {"name": "analytics-python"}}}
    compressed = gzip.compress(orjson.dumps(body))
    for _ in range(2):  # the SDK sending it again after a time-out
        response = await gw.client.post("/v1/batch", content=compressed, headers={
            **gw.write, "content-type": "application/json", "content-encoding": "gzip"})
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    (contact,) = await contacts(gw)
    assert {("visitor", "anon-old"), ("segment", "u-1")} <= {(e["system"], e["id"]) for e in contact["external_ids"]}
    assert contact["attributes"] == {"group_id": "g-1", "group_name": "Acme"}
    assert [i["subject"] for i in await interactions(gw)] == ["Signed Up"]


async def test_a_message_a_service_refuses_is_reported_and_the_others_stand(gw):
    body = {"batch": [{"type": "identify", "userId": "u-1", "traits": {"email": "not an email"}},
                      {"type": "track", "userId": "u-1", "event": "Clicked"}]}
    response = await gw.client.post("/v1/batch", json=body, headers=gw.write)
    assert response.status_code == 200
    (rejected,) = response.json()["rejected"]
    assert (rejected["index"], rejected["type"], rejected["service"], rejected["status"]) == (
        0, "identify", "contacts", 422)
    assert await contacts(gw) == [] and len(await interactions(gw)) == 1


@pytest.mark.parametrize("path, body, status, field", [
    ("/v1/track", {"event": "x"}, 422, "body"),
    ("/v1/track", {"userId": "u"}, 422, "event"),
    ("/v1/identify", {"userId": True}, 422, "userId"),
    ("/v1/alias", {"userId": "u"}, 422, "previousId"),
    ("/v1/group", {"userId": "u"}, 422, "groupId"),
    ("/v1/batch", {"batch": []}, 422, "batch"),
    ("/v1/batch", {"batch": [{"type": "identify", "userId": "u"}, {"type": "fly", "userId": "u"}]}, 422,
     "batch.1.type"),
    ("/v1/batch", {"batch": [{"type": "identify", "userId": "u"}, {"type": "track", "userId": "u"}]}, 422,
     "batch.1.event"),
    ("/v1/batch", {"batch": [{"type": "identify", "userId": "u"}, {"type": "track", "userId": "u",
                   "event": "Order Completed", "properties": {"order_id": "o", "products": [{"price": "abc"}]}}]},
     422, "batch.1.properties.products.0.price"),
    ("/v1/identify", {"userId": "u", "traits": {"bio": "x" * 40_000}}, 413, None),
    ("/v1/batch", {"batch": [{"type": "identify", "userId": f"u{i}", "traits": {"bio": "x" * 30_000}}
                             for i in range(20)]}, 413, None),
])
async def test_bad_input_is_refused_whole_and_nothing_is_written(gw, path, body, status, field):
    response = await gw.client.post(path, json=body, headers=gw.write)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    if field:
        assert any(e["field"] == field for e in response.json()["errors"]), response.json()
    assert await contacts(gw) == [] and await interactions(gw) == [] and await orders(gw) == []


async def test_malformed_json_and_gzip(gw):
    bad = await gw.client.post("/v1/track", content=b"{nope", headers={**gw.write, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.headers["content-type"] == PROBLEM
    fake = await gw.client.post("/v1/track", content=b"plain", headers={**gw.write, "content-encoding": "gzip"})
    assert fake.status_code == 400


async def test_the_write_key_and_its_scope(gw):
    body = {"userId": "u", "event": "x"}
    assert (await gw.client.post("/v1/track", json=body)).status_code == 401
    assert (await gw.client.post("/v1/track", json=body, headers=basic("crm_nothing_here"))).status_code == 401
    other = basic(await gw.key("frontend", "contacts:write"))
    denied = await gw.client.post("/v1/track", json=body, headers=other)
    assert denied.status_code == 403 and denied.json()["required_scope"] == "tracking:write"
    with_password = {"Authorization": "Basic " + base64.b64encode(b"crm_x:secret").decode()}
    assert (await gw.client.post("/v1/track", json=body, headers=with_password)).status_code == 401
    assert (await gw.client.post("/v1/track", json=body, headers=auth(gw.keys["site"]))).status_code == 200


async def test_a_service_that_is_down_is_a_503_the_sdk_retries(gw):
    gw.transport.down("interactions.internal:8003")
    response = await gw.client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=gw.write)
    assert response.status_code == 503 and response.json()["service"] == "interactions"
