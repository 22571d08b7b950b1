"""The Shopify and WooCommerce mappings over the fixture payloads: no I/O. Each mapped order is
also run through the orders service's own validation (prepare_order), so "it adds up" is checked
by the code that will check it in production, not restated here."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from gateway.shop_integrations import shopify_mapping, woocommerce_mapping
from gateway.shop_integrations.amounts import money_of
from gateway.shop_integrations.shops import Shop
from gateway.shop_integrations.signatures import sign, valid_signature
from gateway.shop_integrations.webhook_actions import NothingToDo, PayloadRejected, PostOrder, RecordRefund, UpsertContact
from gateway.shop_integrations.webhook_intake import parse_payload
from services.common.errors import DomainError
from services.orders.order_record import prepare_order
from services.orders.schemas import OrderCreate
from tests.gateway.shop_fixtures import raw

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def shop(platform: str, order_platform: str, *, tomans: bool = False) -> Shop:
    return Shop(id="5d3f0c52-8e0b-4b43-9d64-0d7f7d7c1a11", platform=platform, domain="x", name="x",
                order_platform=order_platform, secret="s" * 20, prices_in_tomans=tomans, active=True,
                created_at=NOW, updated_at=NOW)


SHOPIFY = shop("shopify", "shopify:tea-house.myshopify.com")
WOO = shop("woocommerce", "woocommerce:chaykhaneh.example.ir")


def decimal_payload(name: str) -> dict:
    return parse_payload(raw(name))


def accepted(order: dict):
    """The order as the orders service would store it (raises its DomainError if it does not add up)."""
    return prepare_order(OrderCreate.model_validate(order), region="IR")


def test_signatures_are_base64_hmac_sha256_of_the_raw_body():
    body = raw("shopify_orders_create")
    signature = sign("shpss_test_secret", body)
    assert valid_signature("shpss_test_secret", body, signature)
    assert not valid_signature("another_secret", body, signature)
    assert not valid_signature("shpss_test_secret", body + b" ", signature)
    assert not valid_signature("shpss_test_secret", body, None)
    # The digest as Shopify's documentation computes it: base64 of the raw 32-byte HMAC.
    import base64, hashlib, hmac
    assert signature == base64.b64encode(hmac.new(b"shpss_test_secret", body, hashlib.sha256).digest()).decode()


def test_amounts_are_never_floats():
    parsed = parse_payload(b'{"price": 24.5, "rate": 0.06}')
    assert parsed == {"price": Decimal("24.5"), "rate": Decimal("0.06")}
    assert all(isinstance(v, Decimal) for v in parsed.values())


def test_shopify_sales_tax_order_maps_lines_discounts_taxes_shipping_and_payment():
    order = shopify_mapping.order_of(decimal_payload("shopify_orders_create"), SHOPIFY)
    assert order["platform"] == "shopify:tea-house.myshopify.com" and order["external_id"] == "5829471204513"
    assert order["currency"] == "USD" and order["prices_include_tax"] is False
    assert order["lines"] == [
        {"sku": "KETTLE-CI-1", "name": "Oolong Tea Kettle - Cast iron", "quantity": "1", "unit_price": "199",
         "discount": "10", "tax": "11.34"},
        {"sku": "MUG-GL-350", "name": "Glass Tea Mug", "quantity": "2", "unit_price": "24.5",
         "discount": "2.59", "tax": "2.78"}]
    assert (order["shipping"], order["tax"], order["discount"], order["total"]) == ("10", "0.6", "0", "260.13")
    assert order["discount_codes"] == ["SPRING10"]
    assert order["customer"] == {"external_id": "7390263394465", "email": "ann.baker@example.com",
                                 "phone": "+12125550147", "given_name": "Ann", "family_name": "Baker"}
    assert order["payments"] == [{"method": "shopify_payments", "amount": "260.13",
                                  "paid_at": "2026-03-01T10:00:03-05:00",
                                  "provider_reference": "shopify-order-5829471204513-payment"}]
    assert order["shipping_address"]["country"] == "US" and "status" not in order
    prepared = accepted(order)  # the orders service's own check of the totals
    assert prepared.content["total"] == "260.13" and prepared.content["subtotal"] == "249.53"


def test_shopify_vat_order_in_rials_with_refund_and_fulfilment():
    order = shopify_mapping.order_of(decimal_payload("shopify_orders_updated_irr"), SHOPIFY)
    assert order["currency"] == "IRR" and order["prices_include_tax"] is True
    assert [line["tax"] for line in order["lines"]] == ["1981651", "734862"]
    assert order["tax"] == "41284" and order["shipping"] == "500000" and order["total"] == "33400000"
    assert order["refunds"] == [{"amount": "8900000", "provider_reference": "shopify-refund-1029384756001",
                                 "reason": "قوری شکسته رسید", "refunded_at": "2026-03-20T16:05:10+03:30"}]
    assert order["status"] == "fulfilled"
    assert order["payments"][0]["method"] == "bank_melli_shaparak"
    # Persian digits in the billing phone; the customer's own phone is E.164 already.
    assert order["customer"]["phone"] == "+989121234567" and "email" not in order["customer"]
    assert accepted(order).content["total"] == "33400000"


def test_shopify_cancelled_orders():
    cancelled = decimal_payload("shopify_orders_create")
    cancelled.update(cancelled_at="2026-03-02T08:00:00-05:00", financial_status="voided")
    order = shopify_mapping.order_of(cancelled, SHOPIFY)
    assert order["status"] == "cancelled" and order["payments"] == []
    refunded = copy.deepcopy(cancelled)
    refunded["financial_status"] = "refunded"
    # All of it refunded: refunded is final, so no "cancelled" that the status machine would refuse.
    assert "status" not in shopify_mapping.order_of(refunded, SHOPIFY)


def test_shopify_refund_topic_and_a_refund_that_moves_no_money():
    action = shopify_mapping.action_for("refunds/create", decimal_payload("shopify_refunds_create"), SHOPIFY)
    assert action == RecordRefund("shopify:tea-house.myshopify.com", "5829471204513",
                                  {"amount": "24.6", "provider_reference": "shopify-refund-1029384761121",
                                   "reason": "One mug arrived chipped", "refunded_at": "2026-03-05T14:30:00-05:00"})
    restock = decimal_payload("shopify_refunds_create")
    restock["transactions"] = []
    assert isinstance(shopify_mapping.action_for("refunds/create", restock, SHOPIFY), NothingToDo)


def test_shopify_customer_becomes_a_contact_with_consent_and_external_id():
    action = shopify_mapping.action_for("customers/create", decimal_payload("shopify_customers_create"), SHOPIFY)
    assert isinstance(action, UpsertContact)
    contact = action.contact
    assert contact["given_name"] == "سارا" and contact["emails"] == ["Sara.Ahmadi@example.ir"]
    assert contact["phones"] == ["+989351112233"] and contact["tags"] == ["VIP", "تهران"]
    assert contact["external_ids"] == [{"system": "shopify:tea-house.myshopify.com", "id": "7391100888801"}]
    assert contact["consent"]["email"]["status"] == "withdrawn" and contact["consent"]["sms"]["status"] == "granted"
    assert len(contact["addresses"]) == 1 and contact["addresses"][0]["country"] == "IR"


def test_woocommerce_toman_order_becomes_rials():
    order = woocommerce_mapping.order_of(decimal_payload("woocommerce_order_created_toman"), WOO)
    assert order["currency"] == "IRR"
    assert order["lines"] == [
        {"sku": "TEA-LAH-250", "name": "چای سبز لاهیجان ۲۵۰ گرم", "quantity": "2", "unit_price": "1250000",
         "discount": "250000", "tax": "0"},
        {"sku": "POT-GL-1L", "name": "قوری شیشه‌ای ۱ لیتری", "quantity": "1", "unit_price": "4800000",
         "discount": "480000", "tax": "0"}]
    assert (order["shipping"], order["total"]) == ("350000", "6920000")
    assert order["payments"] == [{"method": "zarinpal", "amount": "6920000", "paid_at": "2026-03-19T15:14:02Z",
                                  "provider_reference": "woocommerce-order-4817-payment"}]
    assert order["placed_at"] == "2026-03-19T15:12:10Z" and order["discount_codes"] == ["nowruz"]
    assert order["customer"] == {"external_id": "215", "email": "ali.karimi@example.ir", "phone": "+989121234567",
                                 "given_name": "علی", "family_name": "كريمي"}
    assert accepted(order).content["total"] == "6920000"


def test_a_shop_pricing_in_tomans_under_irr_converts_too():
    body = decimal_payload("woocommerce_order_created_toman")
    body["currency"] = "IRR"
    as_rials = woocommerce_mapping.order_of(body, WOO)
    assert as_rials["total"] == "692000"  # IRR taken at its word
    in_tomans = woocommerce_mapping.order_of(body, shop("woocommerce", "woocommerce:x", tomans=True))
    assert in_tomans["total"] == "6920000" and in_tomans["currency"] == "IRR"
    assert money_of("usd", prices_in_tomans=True).factor == 1  # the setting is about rials and tomans only


def test_woocommerce_sales_tax_order_with_fee_refund_and_completion():
    order = woocommerce_mapping.order_of(decimal_payload("woocommerce_order_updated_usd"), WOO)
    assert order["prices_include_tax"] is False
    assert order["lines"][0] == {"sku": "woocommerce-product-93", "name": "Woo Single #1", "quantity": "3",
                                 "unit_price": "10", "discount": "3", "tax": "2.7"}
    assert order["lines"][2] == {"sku": "fee-319", "name": "Gift wrap", "quantity": "1", "unit_price": "2",
                                 "tax": "0.2"}
    assert (order["shipping"], order["tax"], order["total"]) == ("5", "0.5", "53.23")
    assert order["status"] == "fulfilled"
    assert order["refunds"] == [{"amount": "5", "provider_reference": "woocommerce-refund-726",
                                 "reason": "Item arrived damaged"}]
    assert order["payments"][0]["method"] == "bacs"
    assert accepted(order).content["total"] == "53.23"


def test_woocommerce_prices_including_tax_are_posted_vat_style():
    body = decimal_payload("woocommerce_order_updated_usd")
    body["prices_include_tax"] = True
    order = woocommerce_mapping.order_of(body, WOO)
    assert order["prices_include_tax"] is True
    assert order["lines"][0] == {"sku": "woocommerce-product-93", "name": "Woo Single #1", "quantity": "3",
                                 "unit_price": "11", "discount": "3.3", "tax": "2.7"}
    assert order["shipping"] == "5.5"
    assert accepted(order).content["total"] == "53.23"  # the same total either way


def test_woocommerce_customer():
    contact = woocommerce_mapping.action_for("customer.created", decimal_payload("woocommerce_customer_created"),
                                             WOO).contact
    assert contact["phones"] == ["+989153214455"] and contact["emails"] == ["fatemeh.hosseini@example.ir"]
    assert contact["external_ids"] == [{"system": "woocommerce:chaykhaneh.example.ir", "id": "216"}]
    assert contact["addresses"] == [{"line1": "خیابان امام رضا، پلاک ۱۸", "city": "مشهد", "region": "RKH",
                                     "postal_code": "9133913451", "country": "IR"}]


def test_an_invalid_phone_is_left_out_not_the_order():
    body = decimal_payload("woocommerce_order_created_toman")
    body["billing"]["phone"] = "not a phone"
    order = woocommerce_mapping.order_of(body, WOO)
    assert "phone" not in order["customer"] and order["customer"]["email"] == "ali.karimi@example.ir"


def test_a_payload_that_does_not_add_up_is_refused_by_the_orders_rules():
    body = decimal_payload("shopify_orders_create")
    body["total_price"] = "261.13"
    with pytest.raises(DomainError) as refused:
        accepted(shopify_mapping.order_of(body, SHOPIFY))
    assert refused.value.status == 422 and "total" in refused.value.detail


@pytest.mark.parametrize("change, reason", [
    (lambda p: p.pop("line_items"), "line_items"),
    (lambda p: p.update(currency=None), "currency"),
    (lambda p: p["line_items"][0].update(price="abc"), "price"),
    (lambda p: p["line_items"][0].update(quantity=0), "quantity"),
    (lambda p: p.pop("total_price"), "total_price"),
])
def test_unmappable_shopify_payloads_say_why(change, reason):
    body = decimal_payload("shopify_orders_create")
    change(body)
    with pytest.raises(PayloadRejected) as rejected:
        shopify_mapping.order_of(body, SHOPIFY)
    assert reason in rejected.value.reason


def test_mapped_orders_are_json_as_the_api_takes_them():
    for name, mapping, the_shop in [("shopify_orders_create", shopify_mapping, SHOPIFY),
                                    ("woocommerce_order_created_toman", woocommerce_mapping, WOO)]:
        action = mapping.action_for("orders/create" if mapping is shopify_mapping else "order.created",
                                    decimal_payload(name), the_shop)
        assert isinstance(action, PostOrder)
        json.dumps(action.order)  # no Decimal or float left in it
