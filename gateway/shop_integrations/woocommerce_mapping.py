"""WooCommerce's webhook payloads (REST API v3 shapes) mapped onto our orders and contacts. Pure.

Orders (order.created and order.updated carry the whole order):
- WooCommerce keeps line amounts without tax whatever the shop's setting: `subtotal` before
  coupons, `total` after, `total_tax` beside them. A shop with `prices_include_tax` is posted VAT
  style (unit price and discount with their tax, the taxes informational), one without it sales-tax
  style; the order's total is the same either way;
- fees are lines of their own; a negative fee (a discount by fee) is order discount;
- shipping is `shipping_total`, its tax `shipping_tax` (the order's `tax`);
- the order's currency `IRT` is the toman, and a shop set to `prices_in_tomans` prices in tomans
  whatever its currency says: both become IRR, every amount x10;
- paid (`date_paid` set): one payment of the total, referenced per order; refunds: each
  `refunds[]` entry (WooCommerce sends them negative), referenced by its id; status completed:
  fulfilled once paid; cancelled: cancelled (unless it was all refunded: refunded is final).
Times are the `*_gmt` fields, which WooCommerce sends in UTC without an offset.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import shop_customers as people
from .amounts import Money, decimal_of, money_of, wire
from .shops import Shop
from .webhook_actions import Action, PayloadRejected, PostOrder, UpsertContact

ORDER_TOPICS = ("order.created", "order.updated")
TOPICS = ORDER_TOPICS + ("customer.created", "customer.updated")
UNIT_PRICE_PLACES = Decimal("0.000001")  # the orders API's finest unit price


def action_for(topic: str, payload: dict[str, Any], shop: Shop) -> Action:
    if topic in ORDER_TOPICS:
        return PostOrder(order_of(payload, shop))
    return UpsertContact(contact_of(payload, shop))


def _utc(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(f"{name}_gmt")
    if not value:
        return None
    value = str(value)
    return value if value.endswith("Z") or "+" in value[10:] else value + "Z"


def _address(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    name = " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p)
    return people.order_address(name=name, line1=raw.get("address_1"), line2=raw.get("address_2"),
                                city=raw.get("city"), region=raw.get("state"), postal_code=raw.get("postcode"),
                                country=raw.get("country"), phone=raw.get("phone"))


def _line(item: dict[str, Any], index: int, money: Money, include_tax: bool) -> dict[str, Any]:
    where = f"line_items[{index}]"
    quantity = decimal_of(item.get("quantity"), f"{where}.quantity")
    if quantity <= 0:
        raise PayloadRejected(f"{where}.quantity: {item.get('quantity')!r} is not positive")
    subtotal, total = money.amount(item.get("subtotal"), f"{where}.subtotal"), money.amount(item.get("total"), f"{where}.total")
    subtotal_tax = money.amount(item.get("subtotal_tax"), f"{where}.subtotal_tax")
    tax = money.amount(item.get("total_tax"), f"{where}.total_tax")
    before, after = (subtotal + subtotal_tax, total + tax) if include_tax else (subtotal, total)
    unit_price = (before / quantity).quantize(UNIT_PRICE_PLACES, ROUND_HALF_UP)
    sku = people.text(item.get("sku"), 100) or f"woocommerce-product-{item.get('variation_id') or item.get('product_id')}"
    line = {"sku": sku, "name": people.text(item.get("name"), 500), "quantity": wire(quantity, f"{where}.quantity"),
            "unit_price": wire(unit_price, f"{where}.subtotal"),
            "discount": wire(before - after, f"{where}.discount"), "tax": wire(tax, f"{where}.total_tax")}
    return {key: value for key, value in line.items() if value is not None}


def _fees(fees: list[dict[str, Any]], money: Money, include_tax: bool) -> tuple[list[dict[str, Any]], Decimal]:
    """(fee lines, discount by negative fees)."""
    lines, discount = [], Decimal(0)
    for i, fee in enumerate(fees):
        amount = money.amount(fee.get("total"), f"fee_lines[{i}].total")
        tax = money.amount(fee.get("total_tax"), f"fee_lines[{i}].total_tax")
        if amount < 0:
            discount += -(amount + tax)
            continue
        price = amount + tax if include_tax else amount
        lines.append({"sku": f"fee-{fee.get('id')}", "name": people.text(fee.get("name"), 500) or "fee",
                      "quantity": "1", "unit_price": wire(price, f"fee_lines[{i}].total"),
                      "tax": wire(tax, f"fee_lines[{i}].total_tax")})
    return lines, discount


def order_of(payload: dict[str, Any], shop: Shop) -> dict[str, Any]:
    """The OrderCreate body of a WooCommerce order payload; raises PayloadRejected."""
    order_id = payload.get("id")
    if not order_id:
        raise PayloadRejected("id: missing")
    money = money_of(payload.get("currency"), prices_in_tomans=shop.prices_in_tomans)
    include_tax = bool(payload.get("prices_include_tax"))
    items = payload.get("line_items") or []
    if not items:
        raise PayloadRejected("line_items: the order has no lines")
    lines = [_line(item, i, money, include_tax) for i, item in enumerate(items)]
    fee_lines, fee_discount = _fees(payload.get("fee_lines") or [], money, include_tax)
    shipping = money.amount(payload.get("shipping_total"), "shipping_total")
    shipping_tax = money.amount(payload.get("shipping_tax"), "shipping_tax")
    total = money.amount(payload.get("total"), "total")
    placed_at = _utc(payload, "date_created")
    if placed_at is None:
        raise PayloadRejected("date_created_gmt: missing")
    billing, shipping_address = _address(payload.get("billing")), _address(payload.get("shipping"))
    raw_billing = payload.get("billing") or {}
    region = (billing or shipping_address or {}).get("country")
    paid_at = _utc(payload, "date_paid")
    status = payload.get("status")
    refunds = [{"amount": wire(-money.amount(r.get("total"), f"refunds[{i}].total"), f"refunds[{i}].total"),
                "provider_reference": f"woocommerce-refund-{r.get('id')}", "reason": people.text(r.get("reason"), 500)}
               for i, r in enumerate(payload.get("refunds") or []) if money.amount(r.get("total"), "refunds") != 0]
    order = {
        "platform": shop.order_platform, "external_id": str(order_id),
        "customer": people.customer_ref(
            external_id=payload.get("customer_id"), email=raw_billing.get("email"), phone=raw_billing.get("phone"),
            given_name=raw_billing.get("first_name"), family_name=raw_billing.get("last_name"), region=region),
        "channel": "web", "currency": money.currency, "prices_include_tax": include_tax,
        "lines": lines + fee_lines,
        "discount": wire(fee_discount, "fee_lines"),
        "tax": wire(shipping_tax, "shipping_tax"),
        "shipping": wire(shipping + shipping_tax if include_tax else shipping, "shipping_total"),
        "total": wire(total, "total"),
        "discount_codes": [c["code"] for c in payload.get("coupon_lines") or [] if c.get("code")],
        "shipping_address": shipping_address, "billing_address": billing, "placed_at": placed_at,
        "status": ("fulfilled" if status == "completed" and paid_at else
                   "cancelled" if status == "cancelled" and not _all_refunded(refunds, total) else None),
        "payments": [{"method": people.slug_of(payload.get("payment_method"), "woocommerce"),
                      "amount": wire(total, "total"), "paid_at": paid_at,
                      "provider_reference": f"woocommerce-order-{order_id}-payment"}] if paid_at and total > 0 else [],
        "refunds": [{k: v for k, v in r.items() if v is not None} for r in refunds],
    }
    return {key: value for key, value in order.items() if value is not None}


def _all_refunded(refunds: list[dict[str, Any]], total: Decimal) -> bool:
    return total > 0 and sum((Decimal(r["amount"]) for r in refunds), Decimal(0)) >= total


def contact_of(payload: dict[str, Any], shop: Shop) -> dict[str, Any]:
    """customer.created and customer.updated."""
    customer_id = payload.get("id")
    if not customer_id:
        raise PayloadRejected("id: missing")
    billing, shipping = _address(payload.get("billing")), _address(payload.get("shipping"))
    region = (billing or shipping or {}).get("country")
    raw_billing = payload.get("billing") or {}
    return people.contact(system=shop.order_platform, external_id=customer_id, source="woocommerce",
                          given_name=payload.get("first_name") or raw_billing.get("first_name"),
                          family_name=payload.get("last_name") or raw_billing.get("last_name"),
                          emails=[payload.get("email"), raw_billing.get("email")],
                          phones=[raw_billing.get("phone"), (payload.get("shipping") or {}).get("phone")],
                          region=region, addresses=[billing, shipping])
