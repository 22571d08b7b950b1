"""Who the demo customers are: a name in their own script, an email, a phone written the way
people in their country write it (Persian or Arabic-Indic digits included), an address, consent,
tags. Pure functions of (seed, customer number): the same seed gives the same people, and the
first 60 customers of a 3,000-customer run are the 60 customers of a 60-customer run.

Every email and phone is unique by construction (the number is part of the email, the phone is a
bijection of the customer's index within its market): two demo customers sharing one would be
folded into one contact by the batch upsert, and the demo's counts would lie.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .catalog import LOYALTY_TIERS, MARKETS, NAMES, SOURCES, TAGS, Market

PERSIAN_DIGITS = "۰۱۲۳۴۵۶۷۸۹"
ARABIC_DIGITS = "٠١٢٣٤٥٦٧٨٩"
# Multiplies a market index into its phone-number space; a prime that shares no factor with any
# space (prefix count x 10^digits), so the mapping is one-to-one.
_PHONE_STRIDE = 1_000_003
WEBSHOP = "webshop"


@dataclass(frozen=True)
class Person:
    number: int  # 0-based, the customer's place in the run
    market: Market
    gender: str
    given_name: str
    family_name: str
    email: str | None
    phone: str | None  # as the customer wrote it
    customer_number: str  # the webshop's own id for them (an external id of the contact)
    visitor_id: str | None  # the web cookie id they browsed with, for some
    city: str
    since: datetime  # when they first came: their activity starts here

    @property
    def script(self) -> str:
        return self.market.script


def customer_rng(seed: int, number: int) -> random.Random:
    """One generator per customer, seeded from text (stable across processes and Python runs)."""
    return random.Random(f"crm-demo:{seed}:{number}")


def pick_market(rng: random.Random) -> Market:
    return rng.choices(MARKETS, weights=[m.share for m in MARKETS])[0]


def make_person(seed: int, number: int, market: Market, market_index: int, rng: random.Random,
                anchor: datetime) -> Person:
    """`market_index`: how many customers of this market came before (the phone's slot)."""
    male, female, family = NAMES[market.script]
    gender = rng.choice(("male", "female"))
    given, given_latin = rng.choice(male if gender == "male" else female)
    surname, surname_latin = rng.choice(family)
    if market.country == "DE" and rng.random() < 0.3:  # some of the diaspora write their names in Latin
        given, surname = given_latin.capitalize(), surname_latin.capitalize()
    has_email = rng.random() < (0.88 if market.country == "IR" else 0.97)
    has_phone = not has_email or rng.random() < (0.98 if market.country == "IR" else 0.85)
    email = None
    if has_email:
        local = f"{given_latin}.{surname_latin}{number}"
        email = f"{local.title() if rng.random() < 0.05 else local}@{rng.choice(market.email_domains)}"
    phone = written_phone(market, market_index, seed, rng) if has_phone else None
    cities, weights = zip(*market.cities)
    visitor = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < 0.3 else None
    since = anchor - timedelta(days=rng.uniform(10, 730))
    return Person(number, market, gender, given, surname, email, phone, f"{seed}{number:06d}", visitor,
                  rng.choices(cities, weights=weights)[0], since)


def written_phone(market: Market, market_index: int, seed: int, rng: random.Random) -> str | None:
    """A valid mobile number of the market, unique per market index; None once the market's
    number space is used up (the US's fictional 555-01xx range holds 1,600)."""
    width = 10 ** market.subscriber_digits
    space = len(market.mobile_prefixes) * width
    if market_index >= space:
        return None
    slot = (market_index * _PHONE_STRIDE + seed * 7_919) % space
    prefix, subscriber = market.mobile_prefixes[slot // width], str(slot % width).zfill(market.subscriber_digits)
    text = market.phone_template.format(p=prefix, s=subscriber)
    roll = rng.random()
    if market.country == "IR":
        national = text
        if roll < 0.15:
            text = f"{national[:4]} {national[4:7]} {national[7:]}"
        elif roll < 0.3:
            text = f"+98 {national[1:4]} {national[4:7]} {national[7:]}"
        elif roll < 0.45:
            text = in_digits(national, PERSIAN_DIGITS)
        elif roll < 0.55:
            text = in_digits(national, ARABIC_DIGITS)
    elif market.script == "ar" and roll < 0.25:
        text = in_digits(text, ARABIC_DIGITS)
    return text


def in_digits(text: str, digits: str) -> str:
    return "".join(digits[int(c)] if c.isdigit() else c for c in text)


def lifecycle_stage(rng: random.Random, order_times: list[datetime], anchor: datetime) -> str:
    """What sales would call them. Buyers are already `customer` (or `churned`), so the contacts
    service's promotion of a lead who buys changes nothing and a re-run finds nothing to update."""
    if not order_times:
        return "lead" if rng.random() < 0.6 else "prospect"
    if anchor - max(order_times) > timedelta(days=365) and rng.random() < 0.5:
        return "churned"
    return "customer"


def contact_body(person: Person, rng: random.Random, *, stage: str, order_count: int) -> dict:
    """The batch-upsert item (the DESIGN.md contact wire shape) for this person."""
    market = person.market
    body: dict = {"given_name": person.given_name, "family_name": person.family_name}
    if person.email:
        body["emails"] = [person.email]
    if person.phone:
        body["phones"] = [person.phone]
    body["addresses"] = [{"line1": street_line(market, rng), "city": person.city, "country": market.country}]
    body["birth_date"] = (date(1960, 1, 1) + timedelta(days=rng.randrange(45 * 365))).isoformat()
    body["gender"] = person.gender
    body["preferred_language"] = market.language
    body["lifecycle_stage"] = stage
    body["source"] = "store" if market.country == "IR" and person.city == "تهران" and rng.random() < 0.2 \
        else rng.choice(SOURCES)
    consent = consent_for(person, rng)
    tags = {tag for tag in TAGS if rng.random() < 0.12}
    if consent.get("email", {}).get("status") == "granted":
        tags.add("newsletter")
    body["tags"] = sorted(tags)
    body["attributes"] = {"referred_by_friend": rng.random() < 0.15}
    if order_count:
        body["attributes"]["loyalty_tier"] = LOYALTY_TIERS[sum(order_count >= n for n in (2, 5, 8))]
    body["external_ids"] = [{"system": WEBSHOP, "id": person.customer_number}]
    if person.visitor_id:
        body["external_ids"].append({"system": "visitor", "id": person.visitor_id})
    body["consent"] = consent
    return body


def street_line(market: Market, rng: random.Random) -> str:
    street, number = rng.choice(market.streets), rng.randrange(1, 240)
    if market.script == "fa" and market.country == "IR":
        return f"{street}، پلاک {in_digits(str(number), PERSIAN_DIGITS)}"
    if market.script == "ar":
        return f"{street}، مبنى {in_digits(str(number), ARABIC_DIGITS)}"
    return f"{street} {number}" if market.country == "DE" else f"{number} {street}"


def consent_for(person: Person, rng: random.Random) -> dict:
    """Per channel, granted or withdrawn, with a fixed time: a re-run restates the same consent
    and so changes nothing (the upsert ignores a statement that is not newer)."""
    out: dict = {}

    def state(status: str, source: str) -> dict:
        at = person.since + timedelta(minutes=rng.randrange(1, 60 * 24 * 5))
        return {"status": status, "source": source, "at": at.isoformat()}

    if person.email and rng.random() < 0.8:
        out["email"] = state("granted" if rng.random() < 0.85 else "withdrawn", "signup form")
    if person.phone and rng.random() < (0.7 if person.market.country == "IR" else 0.4):
        out["sms"] = state("granted", "checkout")
    if person.phone and person.market.script == "ar" and rng.random() < 0.5:
        out["whatsapp"] = state("granted", "whatsapp opt-in")
    if person.phone and person.market.country == "IR" and rng.random() < 0.25:
        out["telegram"] = state("granted", "telegram bot")
    return out
