"""The order as a document: a posted order validated, priced and checked (totals in the
currency's minor units), turned into a new order or into a new version of a stored one.
Pure functions, no I/O: the use cases decide what to store; order_status.py moves an order
through its status machine, payments and refunds.

Totals, in the order's currency, every step quantized to its minor unit (half-up):
    line amount  = quantity x unit_price - line discount (+ line tax unless prices include tax)
    total        = sum(line amounts) - order discount + shipping (+ order tax unless prices include tax)
With `prices_include_tax` (VAT style, as in Iran and the EU) the taxes given are informational:
they are already inside the prices. Without it (sales-tax style) they are added.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from services.common.contact_points import InvalidContactPoint, normalize_phone, validated_email
from services.common.errors import Conflict, DomainError, InvalidInput, invalid_input_from
from services.common.identity_map import VISITOR_SYSTEM, IdentityKey

from . import money
from .schemas import OrderCreate, OrderLineIn, OrderPublic, PaymentIn, RefundIn

# What a (re-)post sets; everything else (status, payments, customer_id, ...) has its own rules.
CONTENT_FIELDS = ("channel", "currency", "prices_include_tax", "lines", "subtotal", "discount", "tax", "shipping",
                  "total", "discount_codes", "shipping_address", "billing_address", "placed_at")
SYSTEM_FIELDS = {"id", "version", "created_at", "updated_at"}


@dataclass(frozen=True)
class OrderInput:
    """A posted order, validated and normalized, ready to become (or update) a stored order."""

    platform: str
    external_id: str
    content: dict[str, Any]
    customer: dict[str, Any] | None  # the normalized reference, None if the post named nobody
    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    status: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.platform, self.external_id

    @property
    def named_customer_id(self) -> str | None:
        return (self.customer or {}).get("id")

    @property
    def reference_keys(self) -> list[IdentityKey]:
        return reference_keys(self.customer, self.platform)


@dataclass(frozen=True)
class Prepared:
    index: int
    order: OrderInput | None = None
    error: dict[str, Any] | None = None


def reference_keys(customer: dict[str, Any] | None, platform: str) -> list[IdentityKey]:
    """Identity-map keys of a stored (normalized) reference, the most specific first: the
    platform's customer id, then email, then phone, then the web visitor id. The same keys the
    contacts service indexes (a visitor id is the external id of system "visitor")."""
    if not customer:
        return []
    keys: list[IdentityKey] = []
    if customer.get("external_id"):
        keys.append(("external", platform, customer["external_id"]))
    if customer.get("email"):
        keys.append(("email", "", customer["email"].lower()))
    if customer.get("phone"):
        keys.append(("phone", "", customer["phone"]))
    if customer.get("visitor_id"):
        keys.append(("external", VISITOR_SYSTEM, customer["visitor_id"]))
    return keys


def normalized_customer(body: OrderCreate, region: str) -> dict[str, Any] | None:
    if body.customer is None:
        return None
    ref = body.customer.model_dump(exclude_none=True)
    try:
        if "email" in ref:
            ref["email"] = validated_email(ref["email"])
    except InvalidContactPoint as exc:
        raise InvalidInput.field(["customer", "email"], str(exc)) from None
    try:
        if "phone" in ref:
            ref["phone"] = normalize_phone(ref["phone"], region)
    except InvalidContactPoint as exc:
        raise InvalidInput.field(["customer", "phone"], str(exc)) from None
    return ref


def _line(line: OrderLineIn, index: int, currency: str, include_tax: bool) -> tuple[dict[str, Any], Decimal]:
    places = money.precision(currency)
    quantity = money.to_decimal(line.quantity)
    if quantity <= 0:
        raise InvalidInput.field(["lines", index, "quantity"], "must be greater than 0")
    unit_price = money.to_decimal(line.unit_price)
    discount = money.minor_units_only(line.discount, currency, ["lines", index, "discount"])
    tax = money.minor_units_only(line.tax, currency, ["lines", index, "tax"])
    gross = money.quantize(quantity * unit_price, places)
    if discount > gross:
        raise InvalidInput.field(["lines", index, "discount"], f"{discount} is more than the line's "
                                 f"{money.format_amount(gross, places)} (quantity x unit_price)")
    amount = gross - discount + (Decimal(0) if include_tax else tax)
    price_places = max(places, -unit_price.as_tuple().exponent)  # "10" USD -> "10.00"; "0.3333" keeps its 4
    return {"sku": line.sku, "name": line.name, "category": line.category, "quantity": line.quantity,
            "unit_price": money.format_amount(unit_price, price_places),
            "discount": money.format_amount(discount, places),
            "tax": money.format_amount(tax, places), "amount": money.format_amount(amount, places)}, amount


def money_entry(entry: PaymentIn | RefundIn, currency: str, loc: list) -> dict[str, Any]:
    """A payment or refund checked against the order's currency; `loc` prefixes error fields."""
    if entry.currency is not None and entry.currency != currency:
        raise InvalidInput.field([*loc, "currency"], f"is {entry.currency} but the order is in {currency}; "
                                 "amounts in different currencies are never added together")
    amount = money.minor_units_only(entry.amount, currency, [*loc, "amount"])
    if amount <= 0:
        raise InvalidInput.field([*loc, "amount"], "must be greater than 0")
    values = entry.model_dump(exclude={"currency"})
    values["amount"] = money.format_amount(amount, money.precision(currency))
    return values


def _money_entries(entries: list, currency: str, field_name: str) -> list[dict[str, Any]]:
    return [money_entry(entry, currency, [field_name, index]) for index, entry in enumerate(entries)]


def prepare_order(body: OrderCreate, *, region: str) -> OrderInput:
    """Validate what pydantic cannot (currency precision, totals, the customer reference) and
    price the order. Raises InvalidInput naming the field."""
    currency, include_tax = body.currency, body.prices_include_tax
    places = money.precision(currency)
    customer = normalized_customer(body, region)
    lines, amounts = [], []
    for index, line in enumerate(body.lines):
        priced, amount = _line(line, index, currency, include_tax)
        lines.append(priced)
        amounts.append(amount)
    subtotal = sum(amounts, Decimal(0))
    discount, tax, shipping, total = (money.minor_units_only(getattr(body, name), currency, [name])
                                      for name in ("discount", "tax", "shipping", "total"))
    if discount > subtotal + shipping:
        raise InvalidInput.field("discount", f"{discount} is more than the lines and shipping together")
    expected = subtotal - discount + shipping + (Decimal(0) if include_tax else tax)
    money.check_total(expected=expected, given=total, currency=currency)
    fmt = lambda amount: money.format_amount(amount, places)  # noqa: E731
    content = {
        "channel": body.channel, "currency": currency, "prices_include_tax": include_tax, "lines": lines,
        "subtotal": fmt(subtotal), "discount": fmt(discount), "tax": fmt(tax), "shipping": fmt(shipping),
        "total": fmt(total), "discount_codes": list(dict.fromkeys(body.discount_codes)),
        "shipping_address": body.shipping_address.model_dump() if body.shipping_address else None,
        "billing_address": body.billing_address.model_dump() if body.billing_address else None,
        "placed_at": body.placed_at,
    }
    return OrderInput(platform=body.platform, external_id=body.external_id, content=content, customer=customer,
                      payments=_money_entries(body.payments, currency, "payments"),
                      refunds=_money_entries(body.refunds, currency, "refunds"), status=body.status)


def prepare_item(index: int, raw: Any, *, region: str) -> Prepared:
    """One batch item: the order, or the problem+json of what is wrong with it."""
    if not isinstance(raw, dict):
        return Prepared(index, error=InvalidInput("the item must be a JSON object (an order)", errors=[
            {"field": "item", "loc": [], "message": "must be an object"}]).problem())
    try:
        return Prepared(index, prepare_order(OrderCreate.model_validate(raw), region=region))
    except ValidationError as exc:
        return Prepared(index, error=invalid_input_from(exc).problem())
    except DomainError as exc:
        return Prepared(index, error=exc.problem())


def zero(currency: str) -> str:
    return money.format_amount(Decimal(0), money.precision(currency))


def new_order(data: OrderInput, *, customer_id: str | None, merged_from: str | None, now: datetime) -> OrderPublic:
    """Version 1, status placed, no payments yet (they follow as versions of their own)."""
    currency = data.content["currency"]
    return OrderPublic.model_validate({
        "id": str(uuid.uuid4()), "platform": data.platform, "external_id": data.external_id,
        "customer_id": customer_id, "customer": data.customer, "merged_from": merged_from, **data.content,
        "status": "placed", "status_history": [{"status": "placed", "at": now}],
        "paid_amount": zero(currency), "refunded_amount": zero(currency), "balance_due": data.content["total"],
        "attributed_at": now if customer_id else None, "version": 1, "created_at": now, "updated_at": now})


def changed_fields(before: OrderPublic, after: OrderPublic) -> list[str]:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    return sorted(name for name in new if name not in SYSTEM_FIELDS and new[name] != old.get(name))


def next_version(order: OrderPublic, now: datetime, **updates: Any) -> OrderPublic:
    """A new version with `updates` set (validated), one above `order`."""
    values = {**order.model_dump(), **updates, "version": order.version + 1, "updated_at": now}
    return OrderPublic.model_validate(values)


def with_content(order: OrderPublic, data: OrderInput, *, now: datetime) -> tuple[OrderPublic, list[str]]:
    """A re-post of the same platform order: its content replaces the stored content; a reference
    replaces the stored one only when the post names a customer. (Unchanged -> same order, [])."""
    if data.content["currency"] != order.currency and (order.payments or order.refunds):
        # A valid order, but the stored one's state refuses it: 409, as every such refusal.
        raise Conflict(f"currency is {data.content['currency']} but payments were recorded in {order.currency}; "
                       "amounts in different currencies are never added together", current_currency=order.currency)
    updates = dict(data.content)
    if data.customer is not None:
        updates["customer"] = data.customer
    places = money.precision(updates["currency"])
    paid = money.to_decimal(order.paid_amount)
    updates["paid_amount"] = money.format_amount(paid, places)
    updates["refunded_amount"] = money.format_amount(money.to_decimal(order.refunded_amount), places)
    updates["balance_due"] = money.format_amount(max(Decimal(0), money.to_decimal(updates["total"]) - paid), places)
    candidate = next_version(order, now, **updates)
    changed = changed_fields(order, candidate)
    return (candidate, changed) if changed else (order, [])
