"""The demo customers' touches with the shop, for POST /v1/interactions/batch: browsing before a
web order, calls and tickets about orders, complaints after refunds, shipping SMS, surveys with
NPS, chats on the channels each market uses, and seasonal email campaigns (sent, opened,
clicked, converted), all before the anchor and in the customer's own language.

Each reference is one the contact carries (email, phone or the visitor id it was given), so the
interactions service attributes them without waiting for anything else. Times have microseconds
from the seeded generator: the demo can find one of its own interactions again by its time
(fill.py uses that to skip a batch it already recorded).
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta

from .catalog import AGENTS, CAMPAIGNS, PHRASES
from .people import Person

CHAT_CHANNELS = {"fa": ("chat", "telegram", "whatsapp"), "ar": ("whatsapp", "chat"), "en": ("chat",)}
NPS_WEIGHTS = (2, 1, 1, 2, 2, 4, 5, 9, 14, 22, 38)  # answers 0..10: mostly promoters, some detractors


def interactions_for(person: Person, orders: list[dict], consent: dict, rng: random.Random,
                     anchor: datetime) -> list[dict]:
    phrases = PHRASES[person.script]
    out: list[dict] = []

    def add(when: datetime, ref: dict | None, **fields) -> None:
        if ref and when < anchor:
            given = {name: value for name, value in fields.items() if value is not None}
            out.append({"customer": ref, "occurred_at": when.isoformat(), **given})

    email = {"email": person.email} if person.email else None
    phone = {"phone": person.phone} if person.phone else None
    anyone = email or phone
    for order in orders:
        placed = datetime.fromisoformat(order["placed_at"])
        if order["channel"] == "web" and rng.random() < 0.4:
            browser = {"visitor_id": person.visitor_id} if person.visitor_id else email
            for line in order["lines"][:rng.randint(1, 3)]:
                add(placed - timedelta(minutes=rng.uniform(2, 90)), browser, type="page_view", channel="web",
                    url=f"https://shop.example/p/{line['sku'].lower()}")
        if rng.random() < 0.1:
            add(placed + timedelta(days=rng.uniform(1, 6)), phone, type="call", channel="phone", direction="inbound",
                subject=rng.choice(phrases["order"]), agent=rng.choice(AGENTS), outcome="answered",
                duration_seconds=rng.randint(40, 600), rating=rng.choice((None, 3, 4, 5, 5)),
                metadata={"order": order["external_id"]})
        if order.get("status") == "fulfilled" and "sms" in consent and rng.random() < 0.3:
            add(placed + timedelta(days=rng.uniform(0.5, 2)), phone, type="sms", channel="sms", direction="outbound",
                body=phrases["shipped"][0], metadata={"order": order["external_id"]})
        if order.get("refunds") or order.get("status") == "cancelled":
            add_trouble(add, order, placed, anyone, phrases, rng)
        elif order.get("status") == "fulfilled" and rng.random() < 0.2:
            nps = rng.choices(range(11), weights=NPS_WEIGHTS)[0]
            add(placed + timedelta(days=rng.uniform(7, 14)), email, type="survey_response", channel="email",
                nps=nps, rating=max(1, min(5, (nps + 1) // 2)),
                body=rng.choice(phrases["praise"] if nps >= 7 else phrases["complaint"]))
    add_conversations(add, person, email, phone, anyone, phrases, rng, anchor)
    if consent.get("email", {}).get("status") == "granted":
        add_campaigns(add, person, email, rng, anchor)
    out.sort(key=lambda item: item["occurred_at"])
    return out


def add_trouble(add, order: dict, placed: datetime, ref: dict | None, phrases: dict, rng: random.Random) -> None:
    """A cancelled or refunded order: a ticket, and sometimes an angry word about it."""
    opened = placed + timedelta(days=rng.uniform(2, 10))
    if rng.random() < 0.6:
        add(opened, ref, type="support_ticket", channel=rng.choice(("email", "web", "phone")),
            subject=rng.choice(phrases["problem"]), agent=rng.choice(AGENTS), status=rng.choice(("resolved", "closed")),
            metadata={"order": order["external_id"]})
    if rng.random() < 0.4:
        add(opened + timedelta(hours=rng.uniform(1, 72)), ref, type="feedback", channel="web", kind="complaint",
            rating=rng.choice((1, 1, 2)), body=rng.choice(phrases["complaint"]))


def add_conversations(add, person: Person, email, phone, anyone, phrases: dict, rng: random.Random,
                      anchor: datetime) -> None:
    """Touches not tied to one order: chats, emails, comments, store visits, a recent open ticket."""
    span = anchor - person.since

    def some_time() -> datetime:
        return person.since + span * rng.random()

    for _ in range(rng.choices((0, 1, 2), weights=(80, 14, 6))[0]):
        add(some_time(), anyone, type="chat", channel=rng.choice(CHAT_CHANNELS[person.script]),
            direction="inbound", subject=rng.choice(phrases["order"]), agent=rng.choice(AGENTS),
            rating=rng.choice((None, None, 4, 5)))
    if rng.random() < 0.08:
        add(some_time(), email, type="email", channel="email", direction="inbound",
            subject=rng.choice(phrases["order"]), body=rng.choice(phrases["order"]))
    if rng.random() < 0.08:
        kind = rng.choice(("comment", "suggestion"))
        add(some_time(), anyone, type="feedback", channel="web", kind=kind, rating=5 if kind == "comment" else 4,
            body=rng.choice(phrases["praise" if kind == "comment" else "suggestion"]))
    if person.city == "تهران" and rng.random() < 0.15:
        add(some_time(), phone, type="visit", channel="store", metadata={"store": "tehran-tajrish"})
    if rng.random() < 0.05:
        add(anchor - timedelta(days=rng.uniform(0.5, 9)), anyone, type="support_ticket",
            channel=rng.choice(("email", "web")), subject=rng.choice(phrases["problem"]),
            status=rng.choice(("open", "pending")), agent=rng.choice(AGENTS))


def add_campaigns(add, person: Person, email, rng: random.Random, anchor: datetime) -> None:
    """Each seasonal campaign since the person came: sent to most, opened by some, clicked and
    converted by fewer; a few unsubscribe."""
    for year in (anchor.year - 2, anchor.year - 1, anchor.year):
        for name, month, day in CAMPAIGNS:
            sent = datetime(year, month, day, 6, 30, tzinfo=anchor.tzinfo) + timedelta(seconds=rng.uniform(0, 3600))
            if not person.since < sent < anchor or rng.random() > 0.6:
                continue
            campaign = f"{name}-{year}"
            add(sent, email, type="campaign_sent", channel="email", campaign_id=campaign)
            if rng.random() < 0.02:
                add(sent + timedelta(hours=rng.uniform(1, 48)), email, type="campaign_unsubscribed", channel="email",
                    campaign_id=campaign)
                return
            if rng.random() > 0.4:
                continue
            opened = sent + timedelta(hours=rng.uniform(0.2, 30))
            add(opened, email, type="campaign_opened", channel="email", campaign_id=campaign)
            if rng.random() < 0.35:
                add(opened + timedelta(seconds=rng.uniform(5, 600)), email, type="campaign_clicked", channel="email",
                    campaign_id=campaign, url=f"https://shop.example/campaigns/{campaign}")
                if rng.random() < 0.2:
                    add(opened + timedelta(minutes=rng.uniform(10, 120)), email, type="campaign_converted",
                        channel="email", campaign_id=campaign)
