"""Fill a running system with a realistic business through the gateway, so a newcomer sees
customer profiles and segments at once:

    make run                     # one terminal: the whole system; prints export CRM_API_KEY=...
    make demo                    # another: python -m deploy.demo (with that key)
    python -m deploy.demo --url http://127.0.0.1:8000 --customers 3000 --seed 7 --api-key KEY

Everything goes through the public API, as a shop or a frontend would send it: contacts by
batch upsert, orders and interactions by batch, then segments. The same seed gives the same
business, and running it again adds nothing: contacts are upserted by their identities, orders
are unique per (platform, external_id), every batch carries an Idempotency-Key, interaction
batches already recorded are skipped (interactions are facts with no natural key), and segment
names are unique. The data itself comes from the pure module business.py and the ones it uses.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import httpx

from deploy.local_secrets import read_dev_key

from .business import DemoCustomer, day_anchor, generate
from .catalog import SEGMENTS
from .people import WEBSHOP
from .posting import DemoError, Poster, problem_detail
from .summary import VIP_SEGMENT, DemoSummary, report

# Each service writes to one SQLite file, one transaction at a time: batches of a few hundred
# rows and a few requests per service keep each answer well inside the gateway's 30 s timeout.
CONTACTS_PER_BATCH = 250
ORDERS_PER_BATCH = 100
# Interactions go in batches of whole customers at fixed places (customers 0-149, 150-299, ...),
# so a bigger run with the same seed meets the batches of a smaller one where it left them.
CUSTOMERS_PER_INTERACTION_BATCH = 150
SHOWN_ERRORS = 10

Progress = Callable[[str], None]


async def fill(client: httpx.AsyncClient, *, customers: int = 3000, seed: int = 7, in_flight: int = 8,
               settle_s: float = 0.0, progress: Progress | None = None) -> DemoSummary:
    """Post the demo business through `client` (base_url: the gateway; auth headers set) and say
    what the services answered. `settle_s`: how long to wait for the segmentation service to
    apply the order events (until the VIP segment has every VIP) before reading member counts."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    say = progress or (lambda line: None)
    started = time.monotonic()
    poster = Poster(client, in_flight=in_flight)
    anchor = await find_anchor(poster, seed)
    business = generate(seed=seed, customers=customers, anchor=anchor)
    summary = DemoSummary(str(client.base_url).rstrip("/"), seed, customers, anchor)
    say(f"generated {customers} customers, {sum(len(c.orders) for c in business)} orders and "
        f"{sum(len(c.interactions) for c in business)} interactions up to {anchor.date()}; posting")
    await post_contacts(poster, business, summary)
    await asyncio.gather(post_orders(poster, business, summary), post_interactions(poster, business, summary))
    await ensure_segments(poster, summary)
    summary.posting_s, summary.requests = time.monotonic() - started, poster.requests
    # From the first tenth: their events were posted first, so their profiles are complete first.
    showcase = max(business[:max(50, customers // 10)], key=lambda c: (kept_orders(c), c.person.city == "تهران"))
    summary.showcase_customer_id = summary.contact_ids[showcase.person.number]
    summary.expected_vip = sum(kept_orders(c) >= 5 for c in business)
    say(f"written in {summary.posting_s:.1f} s; the services now pass the events on to the profiles")
    summary.settled = await wait_for_vips(poster, summary, settle_s, say)
    for segment in summary.segments.values():
        segment["member_count"] = (await poster.get_json(f"/v1/segments/{segment['id']}"))["member_count"]
    summary.elapsed_s = time.monotonic() - started
    return summary


async def find_anchor(poster: Poster, seed: int) -> datetime:
    """The day this seed's business was first loaded (its first customer's creation), else today:
    a re-run on a later day then generates the very same requests as the first run."""
    response = await poster.get("/v1/contacts/lookup", system=WEBSHOP, external_id=f"{seed}{0:06d}")
    if response.status_code in (401, 403):
        raise DemoError(f"the gateway answered {response.status_code}: give an API key with the admin scope "
                        "(--api-key or CRM_API_KEY): the one make run printed (var/dev-admin-key), or one from "
                        "python -m gateway.keys create --name demo --scopes admin")
    if response.status_code == 200:
        return day_anchor(datetime.fromisoformat(response.json()["created_at"].replace("Z", "+00:00")))
    if response.status_code != 404:
        raise DemoError(f"looking up the demo's first customer: {response.status_code} {problem_detail(response)}")
    return day_anchor(datetime.now(timezone.utc))


async def each_batch(poster: Poster, items: list, size: int, work) -> None:
    """`work(batch)` for every batch of `size`, with half of the requests in flight at most: one
    service's batches queue on its single writer anyway; the other half can serve another one."""
    slots = asyncio.Semaphore(max(1, poster.in_flight // 2))

    async def guarded(batch: list) -> None:
        async with slots:
            await work(batch)

    await asyncio.gather(*(guarded(items[i:i + size]) for i in range(0, len(items), size)))


async def post_batch(poster: Poster, summary: DemoSummary, path: str, kind: str, items: list[dict]) -> list[dict]:
    response = await poster.write(path, {"items": items}, kind=kind)
    if response.status_code != 200:
        raise DemoError(f"POST {path}: {response.status_code} {problem_detail(response)}")
    summary.batches += 1
    summary.replayed_batches += response.headers.get("Idempotent-Replayed") == "true"
    return response.json()["results"]


def tally(summary: DemoSummary, counter, result: dict, what: str) -> None:
    counter[result["status"]] += 1
    if result["status"] == "error" and len(summary.errors) < SHOWN_ERRORS:
        summary.errors.append(f"{what}: {(result.get('error') or {}).get('detail', 'refused')}")


def with_customer_id(item: dict, customer_id: str | None) -> dict:
    """The item naming our customer id too, as the shop's backend does once it has looked the
    customer up: the services attribute it at once instead of when their identity maps catch up
    with the contact events, which would cost an extra `attributed` event per order. Anonymous
    page views keep only their visitor id."""
    reference = item.get("customer")
    if not customer_id or not reference or set(reference) == {"visitor_id"}:
        return item
    return {**item, "customer": {"id": customer_id, **reference}}


async def post_contacts(poster: Poster, business: list[DemoCustomer], summary: DemoSummary) -> None:
    summary.contact_ids = [None] * len(business)

    async def one(batch: list[DemoCustomer]) -> None:
        results = await post_batch(poster, summary, "/v1/contacts/batch", "contacts", [c.contact for c in batch])
        for customer, result in zip(batch, results):
            tally(summary, summary.contacts, result, f"contact {customer.person.customer_number}")
            summary.contact_ids[customer.person.number] = result.get("id")

    await each_batch(poster, business, CONTACTS_PER_BATCH, one)


async def post_orders(poster: Poster, business: list[DemoCustomer], summary: DemoSummary) -> None:
    orders = [with_customer_id(order, summary.contact_ids[c.person.number]) for c in business for order in c.orders]

    async def one(batch: list[dict]) -> None:
        for order, result in zip(batch, await post_batch(poster, summary, "/v1/orders/batch", "orders", batch)):
            tally(summary, summary.orders, result, f"order {order['platform']}/{order['external_id']}")
            if result["status"] != "error":
                summary.orders_by_currency[order["currency"]] += 1

    await each_batch(poster, orders, ORDERS_PER_BATCH, one)


async def post_interactions(poster: Poster, business: list[DemoCustomer], summary: DemoSummary) -> None:
    """Customer by customer, like the orders, so the first customers' profiles are complete first.
    Interactions have no natural key, so what an earlier run recorded is looked for and skipped:
    a batch is stored whole, so its first and last customers tell; when only one of them was
    recorded (the earlier run was smaller), each customer of the batch is looked for."""
    per_customer = [[with_customer_id(item, summary.contact_ids[c.person.number]) for item in c.interactions]
                    for c in business]

    async def one(groups: list[list[dict]]) -> None:
        groups = [group for group in groups if group]
        if not groups:
            return
        ends = [await already_recorded(poster, groups[0][0]), await already_recorded(poster, groups[-1][0])]
        if all(ends):
            todo = []
        elif any(ends):
            todo = [group for group in groups if not await already_recorded(poster, group[0])]
        else:
            todo = groups
        summary.interactions["already_recorded"] += sum(map(len, groups)) - sum(map(len, todo))
        if not todo:
            return
        batch = [item for group in todo for item in group]
        results = await post_batch(poster, summary, "/v1/interactions/batch", "interactions", batch)
        for item, result in zip(batch, results):
            tally(summary, summary.interactions, result, f"interaction {item['type']} at {item['occurred_at']}")

    await each_batch(poster, per_customer, CUSTOMERS_PER_INTERACTION_BATCH, one)


async def already_recorded(poster: Poster, item: dict) -> bool:
    """Whether this interaction is there: found by type, channel and its microsecond time."""
    at = datetime.fromisoformat(item["occurred_at"])
    page = await poster.get_json("/v1/interactions", type=item["type"], channel=item["channel"],
                                 occurred_after=at.isoformat(),
                                 occurred_before=(at + timedelta(milliseconds=1)).isoformat(), limit=1)
    return bool(page["items"])


async def list_segments(poster: Poster) -> dict[str, dict]:
    found, cursor = {}, None
    while True:
        page = await poster.get_json("/v1/segments", limit=500, cursor=cursor)
        found.update({segment["name"]: segment for segment in page["items"]})
        if not (cursor := page.get("next_cursor")):
            return found


async def ensure_segments(poster: Poster, summary: DemoSummary) -> None:
    """Create the demo's segments that are not there yet (names are unique: a re-run finds them;
    segments take no Idempotency-Key)."""
    existing = await list_segments(poster)
    for name, description, rule in SEGMENTS:
        created = name not in existing
        if created:
            response = await poster.write("/v1/segments", {"name": name, "description": description, "rule": rule})
            if response.status_code == 409:  # someone created it meanwhile
                existing, created = await list_segments(poster), False
            elif response.status_code != 201:
                raise DemoError(f"creating segment {name!r}: {response.status_code} {problem_detail(response)}")
            else:
                existing[name] = response.json()
        summary.segments[name] = {"id": existing[name]["id"], "member_count": existing[name]["member_count"],
                                  "created": created}


def kept_orders(customer: DemoCustomer) -> int:
    """Orders a profile counts: all but the cancelled ones."""
    return sum(order.get("status") != "cancelled" for order in customer.orders)


async def wait_for_vips(poster: Poster, summary: DemoSummary, timeout_s: float, say: Progress) -> bool:
    """Whether the VIP segment reached every customer with five orders within `timeout_s`. Order
    events are most of what the segmentation service applies, and a VIP's fifth order can be
    anywhere in them, so a full VIP segment is a fair sign that the profiles are built."""
    segment_id, deadline, told = summary.segments[VIP_SEGMENT]["id"], time.monotonic() + timeout_s, 0.0
    while True:
        members = (await poster.get_json(f"/v1/segments/{segment_id}"))["member_count"]
        if members >= summary.expected_vip:
            return True
        if time.monotonic() >= deadline:
            return False
        if time.monotonic() - told >= 15:
            say(f"waiting for the profiles: {members} of {summary.expected_vip} VIP members so far")
            told = time.monotonic()
        await asyncio.sleep(2)


async def main(args: argparse.Namespace) -> int:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=httpx.Timeout(120, connect=5)) as client:
        try:
            await client.get("/healthz")
        except httpx.TransportError:
            print(f"No gateway answers at {args.url}: start the system first (make run).", file=sys.stderr)
            return 1
        try:
            summary = await fill(client, customers=args.customers, seed=args.seed, in_flight=args.in_flight,
                                 settle_s=args.settle, progress=lambda line: print(line, flush=True))
        except DemoError as exc:
            print(f"demo data: {exc}", file=sys.stderr)
            return 1
    print(report(summary))
    return 1 if summary.errors else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.split("\n\n")[0].rstrip(":") + ".")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default: %(default)s)")
    parser.add_argument("--customers", type=int, default=3000, help="how many customers (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="the same seed gives the same business (default: 7)")
    parser.add_argument("--api-key", default=os.environ.get("CRM_API_KEY") or read_dev_key(),
                        help="sent as a Bearer token; default $CRM_API_KEY, else the development admin key "
                             "that make run keeps in var/dev-admin-key")
    parser.add_argument("--in-flight", type=int, default=8, help="requests at once (default: %(default)s)")
    parser.add_argument("--settle", type=float, default=120.0,
                        help="seconds to wait for the profiles before counting members (default: %(default)s)")
    return parser.parse_args(argv)
