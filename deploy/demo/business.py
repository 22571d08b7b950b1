"""The whole demo business as data: every customer with their contact, orders and interactions.
Pure (no I/O): a function of the seed, the number of customers and the anchor, the moment "now"
stands for. fill.py posts it.

The anchor is a UTC midnight rather than the current instant so that two runs on the same day
generate byte-identical requests: the services' Idempotency-Key then answers a re-run with the
first answers instead of writing again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

from .interactions import interactions_for
from .orders import order_body, order_times
from .people import Person, contact_body, customer_rng, lifecycle_stage, make_person, pick_market


@dataclass(frozen=True)
class DemoCustomer:
    person: Person
    contact: dict  # a POST /v1/contacts/batch item
    orders: list[dict]  # POST /v1/orders/batch items
    interactions: list[dict]  # POST /v1/interactions/batch items


def day_anchor(moment: datetime) -> datetime:
    """The UTC midnight that starts `moment`'s day."""
    return moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def generate(*, seed: int, customers: int, anchor: datetime) -> list[DemoCustomer]:
    out: list[DemoCustomer] = []
    per_market: Counter[str] = Counter()
    for number in range(customers):
        rng = customer_rng(seed, number)
        market = pick_market(rng)
        person = make_person(seed, number, market, per_market[market.country], rng, anchor)
        per_market[market.country] += 1
        times = order_times(person, rng, anchor)
        orders = [order_body(person, k, placed_at, rng, anchor) for k, placed_at in enumerate(times)]
        contact = contact_body(person, rng, stage=lifecycle_stage(rng, times, anchor), order_count=len(orders))
        interactions = interactions_for(person, orders, contact["consent"], rng, anchor)
        out.append(DemoCustomer(person, contact, orders, interactions))
    return out
