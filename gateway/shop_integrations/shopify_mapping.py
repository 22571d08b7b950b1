"""Shopify's webhook payloads (REST Admin API shapes) mapped onto our orders and contacts. Pure.

Orders (orders/create, orders/updated, orders/paid, orders/cancelled all carry the whole order):
- a line is `price` x `quantity`, less its `discount_allocations` (line discounts and the share
  of order-level discounts Shopify allocates to it), with the sum of its `tax_lines`;
- shipping is the sum of `shipping_lines[].price`; their discount allocations are the order's
  `discount`, their `tax_lines` the order's `tax` (tax not already in the lines);
- `taxes_included` is our `prices_include_tax` (VAT style: the taxes are inside the prices);
- the total is `total_price`: the orders service checks that the parts add up to it, and a
  payload that does not add up is dead-lettered, never stored half right;
- paid (financial_status paid, partially_refunded or refunded): one payment of the total, with a
  provider reference per order so that re-posts add nothing; refunds: each refund's successful
  `refund` transactions, referenced by the refund's id; cancelled_at: status cancelled (unless
  all of it was refunded: refunded is final); fulfilled: status fulfilled once paid.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import shop_customers as people
from .amounts import Money, money_of, total_of, wire
from .shops import Shop
from .webhook_actions import Action, NothingToDo, PayloadRejected, PostOrder, RecordRefund, UpsertContact

PAID_STATUSES = ("paid", "partially_refunded", "refunded")
ORDER_TOPICS = ("orders/create", "orders/updated", "orders/paid", "orders/cancelled")
CHANNELS = {"web": "web", "pos": "store", "iphone": "app", "android": "app"}
TOPICS = ORDER_TOPICS + ("refunds/create", "customers/create", "customers/update")


def action_for(topic: str, payload: dict[str, Any], shop: Shop) -> Action:
    if topic in ORDER_TOPICS:
        return PostOrder(order_of(payload, shop))
    if topic == "refunds/create":
        return refund_action(payload, shop)
    return UpsertContact(contact_of(payload, shop))


def _required(payload: dict[str, Any], name: str) -> Any:
    value = payload.get(name)
    if value in (None, ""):
        raise PayloadRejected(f"{name}: missing")
    return value


def _address(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    name = raw.get("name") or " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p)
    return people.order_address(name=name, line1=raw.get("address1"), line2=raw.get("address2"),
                                city=raw.get("city"), region=raw.get("province"), postal_code=raw.get("zip"),
                                country=raw.get("country_code"), phone=raw.get("phone"))


def _line(item: dict[str, Any], index: int, money: Money) -> dict[str, Any]:
    where = f"line_items[{index}]"
    quantity = item.get("quantity")
    if not isinstance(quantity, int) or quantity <= 0:
        raise PayloadRejected(f"{where}.quantity: {quantity!r} is not a positive whole number")
    discount = total_of(item.get("discount_allocations") or [], "amount", f"{where}.discount_allocations")
    tax = total_of(item.get("tax_lines") or [], "price", f"{where}.tax_lines")
    sku = people.text(item.get("sku"), 100) or f"shopify-variant-{item.get('variant_id') or item.get('id')}"
    line = {"sku": sku, "name": people.text(item.get("name") or item.get("title"), 500),
            "category": people.text(item.get("product_type")), "quantity": str(quantity),
            "unit_price": wire(money.amount(item.get("price"), f"{where}.price"), f"{where}.price"),
            "discount": wire(discount * money.factor, f"{where}.discount"),
            "tax": wire(tax * money.factor, f"{where}.tax")}
    return {key: value for key, value in line.items() if value is not None}


def refund_of(refund: dict[str, Any], money: Money) -> dict[str, Any] | None:
    """A refund's money (its successful `refund` transactions), or None when it moved none (a restock)."""
    transactions = [t for t in refund.get("transactions") or []
                    if t.get("kind") == "refund" and t.get("status") in ("success", None)]
    amount = total_of(transactions, "amount", f"refunds[{refund.get('id')}].transactions") * money.factor
    if amount <= 0:
        return None
    entry = {"amount": wire(amount, "refund.amount"), "provider_reference": f"shopify-refund-{refund.get('id')}",
             "reason": people.text(refund.get("note"), 500)}
    if refund.get("processed_at") or refund.get("created_at"):
        entry["refunded_at"] = refund.get("processed_at") or refund.get("created_at")
    return {key: value for key, value in entry.items() if value is not None}


def _status(payload: dict[str, Any], paid: bool) -> str | None:
    financial = payload.get("financial_status")
    if payload.get("cancelled_at"):
        return None if financial == "refunded" else "cancelled"
    if payload.get("fulfillment_status") == "fulfilled" and paid:
        return "fulfilled"
    return None


def order_of(payload: dict[str, Any], shop: Shop) -> dict[str, Any]:
    """The OrderCreate body of a Shopify order payload; raises PayloadRejected."""
    order_id = _required(payload, "id")
    money = money_of(payload.get("currency"), prices_in_tomans=shop.prices_in_tomans)
    items = payload.get("line_items") or []
    if not items:
        raise PayloadRejected("line_items: the order has no lines")
    shipping_lines = payload.get("shipping_lines") or []
    shipping = total_of(shipping_lines, "price", "shipping_lines")
    shipping_discount = sum((total_of(s.get("discount_allocations") or [], "amount", "shipping_lines.discount_allocations")
                             for s in shipping_lines), Decimal(0))
    shipping_tax = sum((total_of(s.get("tax_lines") or [], "price", "shipping_lines.tax_lines")
                        for s in shipping_lines), Decimal(0))
    billing, shipping_address = _address(payload.get("billing_address")), _address(payload.get("shipping_address"))
    region = (billing or shipping_address or {}).get("country")
    buyer = payload.get("customer") or {}
    total = money.amount(_required(payload, "total_price"), "total_price")
    paid = payload.get("financial_status") in PAID_STATUSES
    gateways = payload.get("payment_gateway_names") or []
    placed_at = payload.get("processed_at") or _required(payload, "created_at")
    order = {
        "platform": shop.order_platform, "external_id": str(order_id),
        "customer": people.customer_ref(
            external_id=buyer.get("id"), email=payload.get("email") or buyer.get("email"),
            phone=buyer.get("phone") or payload.get("phone") or (billing or {}).get("phone"),
            given_name=buyer.get("first_name"), family_name=buyer.get("last_name"), region=region),
        "channel": CHANNELS.get(payload.get("source_name") or "web"),
        "currency": money.currency, "prices_include_tax": bool(payload.get("taxes_included")),
        "lines": [_line(item, i, money) for i, item in enumerate(items)],
        "discount": wire(shipping_discount * money.factor, "shipping_lines.discount_allocations"),
        "tax": wire(shipping_tax * money.factor, "shipping_lines.tax_lines"),
        "shipping": wire(shipping * money.factor, "shipping_lines.price"),
        "total": wire(total, "total_price"),
        "discount_codes": [code["code"] for code in payload.get("discount_codes") or [] if code.get("code")],
        "shipping_address": shipping_address, "billing_address": billing, "placed_at": placed_at,
        "status": _status(payload, paid),
        "payments": [{"method": people.slug_of(gateways[0] if gateways else None, "shopify"),
                      "amount": wire(total, "total_price"), "paid_at": placed_at,
                      "provider_reference": f"shopify-order-{order_id}-payment"}] if paid and total > 0 else [],
        "refunds": [r for r in (refund_of(refund, money) for refund in payload.get("refunds") or []) if r],
    }
    return {key: value for key, value in order.items() if value is not None}


def refund_action(payload: dict[str, Any], shop: Shop) -> Action:
    """refunds/create: the refund object alone, naming its order by `order_id`."""
    order_id = _required(payload, "order_id")
    currency = next((t.get("currency") for t in payload.get("transactions") or [] if t.get("currency")), None)
    money = money_of(currency, prices_in_tomans=shop.prices_in_tomans) if currency else \
        Money("", 10 if shop.prices_in_tomans else 1)
    refund = refund_of(payload, money)
    if refund is None:
        return NothingToDo("the refund moved no money (a restock or a zero refund)")
    return RecordRefund(shop.order_platform, str(order_id), refund)


def _consent(raw: dict[str, Any] | None) -> dict | None:
    state = (raw or {}).get("state")
    granted = {"subscribed": True, "unsubscribed": False}.get(state)
    return people.consent_entry(granted, (raw or {}).get("consent_updated_at"), "shopify")


def contact_of(payload: dict[str, Any], shop: Shop) -> dict[str, Any]:
    """customers/create and customers/update."""
    customer_id = _required(payload, "id")
    addresses = [_address(a) for a in ([payload.get("default_address")] + list(payload.get("addresses") or [])) if a]
    region = next((a["country"] for a in addresses if a), None)
    tags = [tag.strip() for tag in (payload.get("tags") or "").split(",")]
    return people.contact(system=shop.order_platform, external_id=customer_id, source="shopify",
                          given_name=payload.get("first_name"), family_name=payload.get("last_name"),
                          emails=[payload.get("email")], phones=[payload.get("phone")], region=region,
                          addresses=addresses, tags=tags,
                          consent={"email": _consent(payload.get("email_marketing_consent")),
                                   "sms": _consent(payload.get("sms_marketing_consent"))})
