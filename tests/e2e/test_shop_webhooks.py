"""A Shopify shop and an Iranian WooCommerce shop send their webhooks to the running system (every
process real, API keys on): the orders arrive whole, in rials, attributed to a customer; and a
webhook sent while the orders service is dead is refused, so the platform's retry stores it once."""
from __future__ import annotations

import httpx

from gateway.shop_integrations.signatures import sign
from tests.e2e.test_system import client_for, eventually
from tests.gateway.shop_fixtures import raw

SHOPIFY_SECRET = "shpss_e2e_7c1d9a0b3f5e2468"


async def test_shop_webhooks_reach_orders_and_survive_orders_being_down(system):
    admin = client_for(system, system.create_key("ops", "admin"))
    public = httpx.AsyncClient(base_url=system.url("gateway"), timeout=10.0, trust_env=False)
    async with admin, public:
        shopify = await admin.post("/v1/admin/integrations/shops", json={
            "platform": "shopify", "domain": "tea-house.myshopify.com", "secret": SHOPIFY_SECRET})
        woo = await admin.post("/v1/admin/integrations/shops", json={
            "platform": "woocommerce", "domain": "https://chaykhaneh.example.ir/", "name": "چای‌خانه"})
        assert shopify.status_code == 201 and woo.status_code == 201, (shopify.text, woo.text)

        body = raw("shopify_orders_create")
        headers = {"Content-Type": "application/json", "X-Shopify-Hmac-Sha256": sign(SHOPIFY_SECRET, body),
                   "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": "tea-house.myshopify.com",
                   "X-Shopify-Webhook-Id": "e2e-5829471204513-create"}
        system.kill("orders")
        refused = await public.post("/v1/integrations/shopify/webhooks", content=body, headers=headers)
        assert refused.status_code == 503 and refused.headers["content-type"] == "application/problem+json"
        system.start_process("orders")
        taken = await public.post("/v1/integrations/shopify/webhooks", content=body, headers=headers)
        assert taken.status_code == 200 and taken.json()["status"] == "applied", taken.text
        repeat = await public.post("/v1/integrations/shopify/webhooks", content=body, headers=headers)
        assert repeat.json()["status"] == "duplicate"

        woo_body = raw("woocommerce_order_created_toman")
        woo_headers = {"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.created",
                       "X-WC-Webhook-Signature": sign(woo.json()["secret"], woo_body),
                       "X-WC-Webhook-Source": "https://chaykhaneh.example.ir/", "X-WC-Webhook-Delivery-ID": "d-4817"}
        woo_taken = await public.post("/v1/integrations/woocommerce/webhooks", content=woo_body, headers=woo_headers)
        assert woo_taken.status_code == 200, woo_taken.text

        async def attributed(platform: str):
            items = (await admin.get("/v1/orders", params={"platform": platform})).json()["items"]
            return items if items and items[0]["customer_id"] else None

        [order] = await eventually(lambda: attributed("shopify:tea-house.myshopify.com"))
        assert order["status"] == "paid" and order["total"] == "260.13" and len(order["payments"]) == 1
        [rials] = await eventually(lambda: attributed("woocommerce:chaykhaneh.example.ir"))
        assert rials["currency"] == "IRR" and rials["total"] == "6920000"
        view = (await admin.get(f"/v1/customers/{rials['customer_id']}")).json()
        assert view["contact"]["given_name"] == "علی"
        assert [o["id"] for o in view["orders"]["items"]] == [rials["id"]]
