"""Shop webhooks through the gateway, with the orders and contacts services in-process: the shop
admin API, signatures, idempotency by webhook id and by the platform's ids, dead letters and their
replay, and a service that is down (the webhook is refused, so the platform retries)."""
from __future__ import annotations

import contextlib
import json

import httpx
import pytest_asyncio

from gateway.shop_integrations.signatures import sign
from tests.gateway.conftest import auth, netloc, service_app, start_gateway
from tests.gateway.shop_fixtures import payload, raw

SHOPIFY_SECRET = "shpss_3f9c2a7e81d04b6c9e5a"
SHOPIFY_DOMAIN = "tea-house.myshopify.com"
WOO_SOURCE = "https://chaykhaneh.example.ir/"


@pytest_asyncio.fixture
async def system(database_factory, tmp_path):
    async with contextlib.AsyncExitStack() as stack:
        apps = {name: await stack.enter_async_context(service_app(name, database_factory))
                for name in ("contacts", "orders")}
        gw = await stack.enter_async_context(start_gateway(tmp_path, apps))
        gw.apps = apps
        gw.admin = auth(await gw.key("ops", "admin"))
        yield gw


async def register(gw, **body) -> dict:
    response = await gw.client.post("/v1/admin/integrations/shops", json=body, headers=gw.admin)
    assert response.status_code == 201, response.text
    return response.json()


def shopify_headers(body: bytes, topic: str, webhook_id: str, secret: str = SHOPIFY_SECRET) -> dict:
    return {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": sign(secret, body),
            "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOPIFY_DOMAIN, "X-Shopify-Webhook-Id": webhook_id,
            "X-Shopify-API-Version": "2026-01", "X-Shopify-Triggered-At": "2026-03-01T15:00:05.123Z"}


def woo_headers(body: bytes, topic: str, delivery_id: str, secret: str) -> dict:
    resource, _, event = topic.partition(".")
    return {"Content-Type": "application/json", "X-WC-Webhook-Signature": sign(secret, body),
            "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Source": WOO_SOURCE, "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event, "X-WC-Webhook-ID": "12", "X-WC-Webhook-Delivery-ID": delivery_id,
            "User-Agent": "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)"}


async def shopify(gw, name: str, topic: str, webhook_id: str, body: bytes | None = None, **kw) -> httpx.Response:
    body = raw(name) if body is None else body
    return await gw.client.post("/v1/integrations/shopify/webhooks", content=body,
                                headers=shopify_headers(body, topic, webhook_id, **kw))


async def orders_of(gw, platform: str) -> list[dict]:
    response = await gw.client.get("/v1/orders", params={"platform": platform}, headers=gw.admin)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_shop_admin_shows_the_secret_once_and_needs_admin(system):
    gw = system
    shop = await register(gw, platform="shopify", domain=f"https://{SHOPIFY_DOMAIN}/", secret=SHOPIFY_SECRET)
    assert shop["secret"] == SHOPIFY_SECRET and shop["domain"] == SHOPIFY_DOMAIN
    assert shop["order_platform"] == f"shopify:{SHOPIFY_DOMAIN}"
    listed = await gw.client.get("/v1/admin/integrations/shops", headers=gw.admin)
    one = await gw.client.get(f"/v1/admin/integrations/shops/{shop['id']}", headers=gw.admin)
    for answer in (listed.text, one.text):
        assert SHOPIFY_SECRET not in answer and "…9e5a" in answer
    woo = await register(gw, platform="woocommerce", domain=WOO_SOURCE, prices_in_tomans=True)
    assert len(woo["secret"]) >= 32  # made for the shop owner to paste into WooCommerce
    again = await gw.client.post("/v1/admin/integrations/shops", headers=gw.admin,
                                 json={"platform": "shopify", "domain": SHOPIFY_DOMAIN, "secret": "x" * 20})
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    no_secret = await gw.client.post("/v1/admin/integrations/shops", headers=gw.admin,
                                     json={"platform": "shopify", "domain": "b.myshopify.com"})
    assert no_secret.status_code == 422 and "secret" in no_secret.json()["detail"]
    shop_key = auth(await gw.key("shop", "orders:write"))
    refused = await gw.client.get("/v1/admin/integrations/shops", headers=shop_key)
    assert refused.status_code == 403
    patched = await gw.client.patch(f"/v1/admin/integrations/shops/{shop['id']}", headers=gw.admin,
                                    json={"secret": "shpss_rotated_0000aaaa"})
    assert patched.status_code == 200 and "secret" not in patched.json() and patched.json()["secret_hint"] == "…aaaa"
    audit = await gw.client.get("/v1/audit", params={"action": "shops.update"}, headers=gw.admin)
    assert audit.json()["items"][0]["detail"] == {"secret": "replaced"}
    assert (await gw.client.delete(f"/v1/admin/integrations/shops/{shop['id']}", headers=gw.admin)).status_code == 204
    gone = await shopify(gw, "shopify_orders_create", "orders/create", "w-1", secret="shpss_rotated_0000aaaa")
    assert gone.status_code == 401


async def test_shopify_order_applied_once_per_webhook_id_and_per_order(system):
    gw = system
    await register(gw, platform="shopify", domain=SHOPIFY_DOMAIN, secret=SHOPIFY_SECRET)
    first = await shopify(gw, "shopify_orders_create", "orders/create", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "applied" and first.json()["outcome"] == "created"
    again = await shopify(gw, "shopify_orders_create", "orders/create", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    # orders/paid for the same order, another webhook id: the same order, nothing doubled.
    paid = await shopify(gw, "shopify_orders_create", "orders/paid", "0f1c8a3e-1111-4d1f-9c55-5b2d9f0e7a21")
    assert paid.status_code == 200 and paid.json()["id"] == first.json()["id"]
    [order] = await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}")
    assert order["status"] == "paid" and order["total"] == "260.13" and order["currency"] == "USD"
    assert len(order["payments"]) == 1 and order["payments"][0]["amount"] == "260.13"
    assert order["version"] == 2  # placed, then paid; the repeat changed nothing
    refund = await shopify(gw, "shopify_refunds_create", "refunds/create", "a7e0b2f4-2222-4c8e-b3f1-6d9e0c1a2b34")
    assert refund.status_code == 200 and refund.json()["status"] == "applied", refund.text
    [order] = await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}")
    assert order["status"] == "partially_refunded" and order["refunded_amount"] == "24.60"


async def test_bad_signatures_and_unknown_topics(system):
    gw = system
    await register(gw, platform="shopify", domain=SHOPIFY_DOMAIN, secret=SHOPIFY_SECRET)
    forged = await shopify(gw, "shopify_orders_create", "orders/create", "w-2", secret="someone-elses-secret")
    assert forged.status_code == 401 and forged.headers["content-type"] == "application/problem+json"
    assert "signature" in forged.json()["detail"]
    body = raw("shopify_orders_create")
    tampered = await gw.client.post("/v1/integrations/shopify/webhooks", content=body.replace(b"260.13", b"1.00"),
                                    headers=shopify_headers(body, "orders/create", "w-3"))
    assert tampered.status_code == 401
    stranger = {**shopify_headers(body, "orders/create", "w-4"), "X-Shopify-Shop-Domain": "other.myshopify.com"}
    unknown_shop = await gw.client.post("/v1/integrations/shopify/webhooks", content=body, headers=stranger)
    assert unknown_shop.status_code == 401 and "other.myshopify.com" in unknown_shop.json()["detail"]
    unsigned = await gw.client.post("/v1/integrations/shopify/webhooks", content=body,
                                    headers={"X-Shopify-Shop-Domain": SHOPIFY_DOMAIN, "X-Shopify-Topic": "orders/create"})
    assert unsigned.status_code == 401
    ignored = await shopify(gw, "shopify_orders_create", "products/update", "w-5")
    assert ignored.status_code == 202 and ignored.json()["status"] == "ignored"
    assert await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}") == []


async def test_woocommerce_toman_order_and_customer(system):
    gw = system
    shop = await register(gw, platform="woocommerce", domain=WOO_SOURCE)
    body = raw("woocommerce_order_created_toman")
    created = await gw.client.post("/v1/integrations/woocommerce/webhooks", content=body,
                                   headers=woo_headers(body, "order.created", "9f1d2c3b4a5e6f70", shop["secret"]))
    assert created.status_code == 200 and created.json()["status"] == "applied", created.text
    [order] = await orders_of(gw, "woocommerce:chaykhaneh.example.ir")
    assert order["currency"] == "IRR" and order["total"] == "6920000" and order["status"] == "paid"
    assert order["lines"][0]["unit_price"] == "1250000" and order["discount_codes"] == ["nowruz"]
    customer = (await gw.client.post("/v1/integrations/woocommerce/webhooks",
                                     content=(c := raw("woocommerce_customer_created")),
                                     headers=woo_headers(c, "customer.created", "77aa", shop["secret"]))).json()
    assert customer["status"] == "applied" and customer["resource"] == "contact"
    contact = (await gw.client.get(f"/v1/contacts/{customer['id']}", headers=gw.admin)).json()
    assert contact["given_name"] == "فاطمه" and contact["phones"] == ["+989153214455"]
    assert {"system": "woocommerce:chaykhaneh.example.ir", "id": "216"} in contact["external_ids"]
    ping = await gw.client.post("/v1/integrations/woocommerce/webhooks", content=b"webhook_id=12",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "X-WC-Webhook-Source": WOO_SOURCE})
    assert ping.status_code == 200 and ping.json()["status"] == "ping"


async def test_a_payload_that_does_not_add_up_is_kept_with_its_reason(system):
    gw = system
    await register(gw, platform="shopify", domain=SHOPIFY_DOMAIN, secret=SHOPIFY_SECRET)
    wrong = payload("shopify_orders_create")
    wrong["total_price"] = "261.13"
    body = json.dumps(wrong).encode()
    kept = await shopify(gw, "", "orders/create", "w-10", body=body)
    assert kept.status_code == 202 and kept.json()["status"] == "dead_lettered"
    assert await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}") == []  # nothing half-written
    letters = (await gw.client.get("/v1/admin/integrations/dead-letters", headers=gw.admin)).json()["items"]
    [letter] = letters
    assert letter["id"] == kept.json()["dead_letter_id"] and letter["topic"] == "orders/create"
    assert "total" in letter["reason"] and letter["problem"]["status"] == 422
    assert letter["body"].encode() == body
    again = await shopify(gw, "", "orders/create", "w-10", body=body)
    assert again.json()["status"] == "duplicate"  # the same delivery is not kept twice
    broken = await shopify(gw, "", "orders/create", "w-11", body=b"{not json")
    assert broken.status_code == 202 and "JSON" in broken.json()["reason"]


async def test_a_refund_before_its_order_is_kept_and_replayed(system):
    gw = system
    await register(gw, platform="shopify", domain=SHOPIFY_DOMAIN, secret=SHOPIFY_SECRET)
    early = await shopify(gw, "shopify_refunds_create", "refunds/create", "r-1")
    assert early.status_code == 202 and "no order" in early.json()["reason"]
    letter_id = early.json()["dead_letter_id"]
    assert (await shopify(gw, "shopify_orders_create", "orders/create", "o-1")).status_code == 200
    replayed = await gw.client.post(f"/v1/admin/integrations/dead-letters/{letter_id}/replay", headers=gw.admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["receipt"]["status"] == "applied" and replayed.json()["dead_letter"]["resolved_at"]
    [order] = await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}")
    assert order["refunded_amount"] == "24.60"
    open_letters = (await gw.client.get("/v1/admin/integrations/dead-letters", headers=gw.admin)).json()["items"]
    assert open_letters == []
    deleted = await gw.client.delete(f"/v1/admin/integrations/dead-letters/{letter_id}", headers=gw.admin)
    assert deleted.status_code == 204
    assert (await gw.client.get(f"/v1/admin/integrations/dead-letters/{letter_id}", headers=gw.admin)).status_code == 404
    missing = await gw.client.post("/v1/admin/integrations/dead-letters/6f1e2d3c-0000-4000-8000-000000000000/replay",
                                   headers=gw.admin)
    assert missing.status_code == 404


async def test_orders_down_the_webhook_is_refused_and_taken_on_the_retry(system):
    gw = system
    await register(gw, platform="shopify", domain=SHOPIFY_DOMAIN, secret=SHOPIFY_SECRET)
    gw.transport.down(netloc("orders"))
    down = await shopify(gw, "shopify_orders_create", "orders/create", "d-1")
    assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
    assert down.json()["service"] == "orders"
    gw.transport.transports[netloc("orders")] = httpx.ASGITransport(app=gw.apps["orders"])
    retried = await shopify(gw, "shopify_orders_create", "orders/create", "d-1")
    assert retried.status_code == 200 and retried.json()["status"] == "applied"  # not "duplicate": nothing was recorded
    assert len(await orders_of(gw, f"shopify:{SHOPIFY_DOMAIN}")) == 1
