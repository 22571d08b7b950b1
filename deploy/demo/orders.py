"""What the demo customers bought: order bodies for POST /v1/orders/batch, with totals that add up
the way the orders service checks them (docs/orders.md, "Money and totals").

Amounts are Decimal until they become decimal strings in the currency's minor unit: rials have
none (and prices are whole multiples of 10,000 rials, as Iranian shops price), USD/EUR/GBP/AED
have cents. Iran, the Gulf and Europe quote prices with VAT inside; the US and the Saudi store
add sales tax on top, so both of the service's tax styles appear.

An order is placed, paid, fulfilled, cancelled or (partly) refunded in one post: payments and
refunds carry provider references and fixed times, so posting the same order again adds nothing.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .catalog import PRODUCTS, RATES, Product
from .people import WEBSHOP, Person

MINOR_UNITS = {"IRR": 0, "USD": 2, "EUR": 2, "GBP": 2, "AED": 2}
RIAL_STEP = Decimal(10_000)
SHIPPING = {"IRR": ("450000", "20000000"), "AED": ("25.00", "200"), "USD": ("9.99", "100"),
            "GBP": ("4.99", "60"), "EUR": ("5.90", "70")}  # fee, free from this subtotal
DISCOUNT_CODES = ("NOROOZ", "WELCOME10", "YALDA", "FRIENDS")
# How many orders a customer places: most a few, some many (they make the VIP segment).
ORDER_COUNTS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20)
ORDER_COUNT_WEIGHTS = (14, 24, 16, 12, 9, 7, 5, 4, 3, 2, 2, 1, 1)


def quantize(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def money(amount: Decimal, currency: str) -> str:
    """The wire form: a decimal string with exactly the currency's minor digits ("1250000", "19.99")."""
    return f"{quantize(amount, currency):.{MINOR_UNITS[currency]}f}"


def unit_price(product: Product, currency: str) -> Decimal:
    """A shelf price: whole 10,000s of rials, or x.99 / x.49 in currencies with cents."""
    raw = product.usd * RATES[currency]
    if currency == "IRR":
        return (raw / RIAL_STEP).quantize(Decimal(1), rounding=ROUND_HALF_UP) * RIAL_STEP
    half_units = (raw * 2).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(Decimal("0.99"), half_units / 2 - Decimal("0.01"))


def order_times(person: Person, rng: random.Random, anchor: datetime) -> list[datetime]:
    """When the person ordered, oldest first. About a third of the buyers stopped more than 180
    days ago (the lapsed segment); the others are still buying."""
    count = rng.choices(ORDER_COUNTS, weights=ORDER_COUNT_WEIGHTS)[0]
    start = person.since
    end = anchor - timedelta(hours=rng.uniform(1, 24 * 5))
    if (anchor - start).days > 200 and rng.random() < 0.35:
        end = start + (anchor - timedelta(days=185) - start) * rng.random()
    return sorted(start + (end - start) * rng.random() for _ in range(count))


def order_body(person: Person, k: int, placed_at: datetime, rng: random.Random, anchor: datetime) -> dict:
    """The person's k-th order; its fate (paid, fulfilled, refunded, ...) depends on its age."""
    market, currency = person.market, person.market.currency
    platform, channel = pick_platform(person, rng)
    lines, net, line_tax = [], Decimal(0), Decimal(0)
    for product in pick_products(rng):
        price, quantity = unit_price(product, currency), rng.choice((1, 1, 1, 2, 2, 3))
        discount = quantize(price * quantity * Decimal("0.1"), currency) if rng.random() < 0.08 else Decimal(0)
        if currency == "IRR":
            discount = (discount / RIAL_STEP).quantize(Decimal(1)) * RIAL_STEP
        amount = quantize(price * quantity, currency) - discount
        rate = market.tax_rate
        tax = quantize(amount * rate / (1 + rate) if market.prices_include_tax else amount * rate, currency)
        net, line_tax = net + amount + (0 if market.prices_include_tax else tax), line_tax + tax
        lines.append({"sku": product.sku, "name": product.names[person.script], "category": product.category,
                      "quantity": str(quantity), "unit_price": money(price, currency),
                      "discount": money(discount, currency), "tax": money(tax, currency)})
    fee, free_from = SHIPPING[currency]
    shipping = Decimal(0) if channel == "store" or net >= Decimal(free_from) else Decimal(fee)
    codes, discount = [], Decimal(0)
    if rng.random() < 0.15:
        codes = [rng.choice(DISCOUNT_CODES)]
        discount = quantize(net * Decimal("0.05"), currency)
        if currency == "IRR":
            discount = (discount / RIAL_STEP).quantize(Decimal(1)) * RIAL_STEP
    total = net - discount + shipping
    body = {"platform": platform, "external_id": f"{person.customer_number}-{k + 1:02d}",
            "customer": customer_reference(person, platform), "channel": channel, "currency": currency,
            "prices_include_tax": market.prices_include_tax, "lines": lines,
            "discount": money(discount, currency), "shipping": money(shipping, currency),
            # VAT style: the order's tax is the VAT already inside the prices, for the record;
            # sales-tax style: the lines carry it, and the order adds none of its own.
            "tax": money(line_tax if market.prices_include_tax else Decimal(0), currency),
            "total": money(total, currency), "discount_codes": codes, "placed_at": placed_at.isoformat()}
    if channel != "store":
        body["shipping_address"] = {"name": f"{person.given_name} {person.family_name}", "city": person.city,
                                    "country": market.country}
    body.update(fate(body, total, placed_at, rng, anchor))
    return body


def pick_platform(person: Person, rng: random.Random) -> tuple[str, str]:
    roll = rng.random()
    if person.market.country != "IR":
        return (WEBSHOP, "web") if roll < 0.7 else ("mobile-app", "app")
    if roll < 0.12 and person.city == "تهران" and person.phone:
        return "pos-tehran", "store"
    if roll < 0.25:
        return "marketplace", "marketplace"
    return (WEBSHOP, "web") if roll < 0.65 else ("mobile-app", "app")


def pick_products(rng: random.Random) -> list[Product]:
    """One to four different products; rugs and samovars rarely, tea and saffron often."""
    weights = [1 if p.usd >= 80 else 4 if p.usd >= 30 else 9 for p in PRODUCTS]
    count = rng.choices((1, 2, 3, 4), weights=(45, 30, 17, 8))[0]
    chosen: list[Product] = []
    while len(chosen) < count:
        product = rng.choices(PRODUCTS, weights=weights)[0]
        if product not in chosen:
            chosen.append(product)
    return chosen


def customer_reference(person: Person, platform: str) -> dict:
    """What each platform knows of the buyer: the webshop its own customer id (which the contact
    carries as an external id), the app and marketplace an email or a phone, the till a phone."""
    ref: dict = {}
    if platform == WEBSHOP:
        ref["external_id"] = person.customer_number
    if person.email and platform != "pos-tehran":
        ref["email"] = person.email
    elif person.phone:
        ref["phone"] = person.phone
    return {**ref, "given_name": person.given_name, "family_name": person.family_name}


def fate(body: dict, total: Decimal, placed_at: datetime, rng: random.Random, anchor: datetime) -> dict:
    """Payments, refunds and the status the platform reports, by the order's age: recent orders
    may still wait for payment or shipping; old ones were fulfilled, cancelled or refunded."""
    currency, reference = body["currency"], f"{body['platform']}-{body['external_id']}"
    age = anchor - placed_at
    roll = rng.random()
    iranian = currency == "IRR"
    method = rng.choices(("card", "wallet", "cod"), weights=(70, 20, 10))[0] if iranian else \
        rng.choices(("card", "paypal"), weights=(80, 20))[0]
    if roll < 0.07 and age > timedelta(days=2):
        return {"status": "cancelled"}
    if age < timedelta(days=2) and roll < 0.5:
        return {}  # placed: waiting for the bank transfer or the courier's cash
    paid_after = timedelta(days=rng.uniform(1, 3)) if method == "cod" else timedelta(minutes=rng.uniform(1, 30))
    paid_at = min(placed_at + paid_after, anchor - timedelta(minutes=1))
    out: dict = {"payments": [{"method": method, "amount": money(total, currency), "paid_at": paid_at.isoformat(),
                               "provider_reference": f"{reference}-p1"}]}
    if age < timedelta(days=6) and roll < 0.7:
        return out  # paid, not shipped yet
    if age > timedelta(days=21) and roll > 0.87:
        refund = total if roll > 0.94 else quantize(total * Decimal(rng.uniform(0.2, 0.5)), currency)
        if iranian:
            refund = max(RIAL_STEP, (refund / RIAL_STEP).quantize(Decimal(1)) * RIAL_STEP)
        refunded_at = placed_at + timedelta(days=rng.uniform(3, 20))
        out["refunds"] = [{"amount": money(refund, currency), "refunded_at": refunded_at.isoformat(),
                           "reason": "returned" if refund == total else "damaged item",
                           "provider_reference": f"{reference}-r1"}]
        return out  # partially_refunded or refunded
    out["status"] = "fulfilled"
    return out
