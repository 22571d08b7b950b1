"""The demo business generators (deploy/demo/), without any I/O: the same seed gives the same
business, the names are in their own scripts, and every request the demo would send passes the
services' own validation (the functions their batch endpoints call), money included."""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from babel.numbers import get_currency_precision

from deploy.demo.business import day_anchor, generate
from deploy.demo.catalog import SEGMENTS
from services.common.contact_points import normalize_phone, validated_email
from services.contacts.upsert import prepare_item as prepare_contact
from services.interactions.interaction_record import prepare as prepare_interaction
from services.orders.order_record import prepare_item as prepare_order
from services.segmentation.rules import parse_rule

ANCHOR = datetime(2026, 3, 21, tzinfo=timezone.utc)
PERSIAN_ONLY = set("پچژگکی")  # letters Arabic does not use (keheh, Farsi yeh, ...)
ARABIC_ONLY = set("ةيكأإ")  # Arabic letter forms Persian text does not use
EASTERN_DIGITS = set("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩")


@pytest.fixture(scope="module")
def business():
    return generate(seed=7, customers=300, anchor=ANCHOR)


def as_json(customers) -> str:
    return json.dumps([[c.contact, c.orders, c.interactions] for c in customers], ensure_ascii=False)


def test_the_same_seed_gives_the_same_business_and_another_seed_another(business):
    again = generate(seed=7, customers=300, anchor=ANCHOR)
    assert as_json(again) == as_json(business)
    assert as_json(generate(seed=8, customers=300, anchor=ANCHOR)) != as_json(business)
    # A smaller run is the start of a larger one: a test's 60 customers are the demo's first 60.
    assert as_json(generate(seed=7, customers=60, anchor=ANCHOR)) == as_json(business[:60])


def test_the_anchor_is_the_utc_midnight_of_the_day():
    tehran_evening = datetime(2026, 3, 21, 23, 30, tzinfo=timezone(timedelta(hours=3, minutes=30)))
    assert day_anchor(tehran_evening) == datetime(2026, 3, 21, tzinfo=timezone.utc)


def test_names_are_written_in_persian_arabic_and_latin_scripts(business):
    names = [c.contact["given_name"] + " " + c.contact["family_name"] for c in business]
    persian = [n for n in names if set(n) & PERSIAN_ONLY]
    arabic = [n for n in names if set(n) & ARABIC_ONLY and not set(n) & PERSIAN_ONLY]
    latin = [n for n in names if re.fullmatch(r"[A-Za-z ]+", n)]
    assert len(persian) > 100 and len(arabic) > 30 and len(latin) > 30, (len(persian), len(arabic), len(latin))
    assert {c.contact["preferred_language"] for c in business} >= {"fa", "ar", "en-GB", "en-US"}


def test_emails_and_phones_are_valid_unique_and_some_phones_use_eastern_digits(business):
    emails = [validated_email(e).lower() for c in business for e in c.contact.get("emails", [])]
    phones = [normalize_phone(p, "IR") for c in business for p in c.contact.get("phones", [])]
    assert len(set(emails)) == len(emails) > 250
    assert len(set(phones)) == len(phones) > 250
    written = [p for c in business for p in c.contact.get("phones", [])]
    assert any(set(p) & EASTERN_DIGITS for p in written)
    for country_code in ("+98", "+971", "+966", "+44", "+1", "+49"):
        assert any(p.startswith(country_code) for p in phones), country_code


def test_every_request_passes_the_services_own_validation(business):
    now = ANCHOR + timedelta(hours=1)
    problems = []
    for customer in business:
        problems.append(prepare_contact(0, customer.contact, region="IR", now=now).error)
        problems += [prepare_order(0, order, region="IR").error for order in customer.orders]
        problems += [prepare_interaction(0, item, region="IR", now=now, max_future_s=300).error
                     for item in customer.interactions]
    assert [p for p in problems if p] == []
    for _name, _description, rule in SEGMENTS:
        parse_rule(rule)


def test_amounts_are_decimal_strings_in_each_currencys_minor_unit(business):
    orders = [order for c in business for order in c.orders]
    currencies = Counter(order["currency"] for order in orders)
    assert currencies["IRR"] > len(orders) / 3 and len(currencies) >= 4, currencies
    for order in orders:
        places = get_currency_precision(order["currency"])  # CLDR: IRR 0, USD/EUR/GBP/AED 2
        pattern = r"\d+" if places == 0 else rf"\d+\.\d{{{places}}}"
        amounts = [order[name] for name in ("total", "discount", "tax", "shipping")]
        amounts += [line[name] for line in order["lines"] for name in ("unit_price", "discount", "tax")]
        amounts += [entry["amount"] for entry in order.get("payments", []) + order.get("refunds", [])]
        assert all(isinstance(a, str) and re.fullmatch(pattern, a) for a in amounts), order
        if order["currency"] == "IRR":
            assert Decimal(order["total"]) >= 1_000_000  # rials: large numbers, no decimals


def test_the_business_has_history_and_variety(business):
    orders = [order for c in business for order in c.orders]
    placed = [datetime.fromisoformat(order["placed_at"]) for order in orders]
    touched = [datetime.fromisoformat(item["occurred_at"]) for c in business for item in c.interactions]
    assert all(ANCHOR - timedelta(days=731) < t < ANCHOR for t in placed + touched)
    assert min(placed) < ANCHOR - timedelta(days=540) and max(placed) > ANCHOR - timedelta(days=30)
    fates = Counter(order.get("status") or ("refunded" if order.get("refunds") else "paid") for order in orders)
    assert fates["fulfilled"] and fates["cancelled"] and fates["refunded"], fates
    kinds = Counter(item["type"] for c in business for item in c.interactions)
    assert {"call", "chat", "support_ticket", "feedback", "survey_response", "campaign_opened"} <= set(kinds)
    order_counts = Counter(min(len(c.orders), 5) for c in business)
    assert order_counts[0] and order_counts[5], order_counts  # leads without orders, and VIPs
    stages = Counter(c.contact["lifecycle_stage"] for c in business)
    assert stages["customer"] and stages["lead"] and stages["churned"], stages
