"""The projection applies polls of any size to the same end: random histories (orders placed,
paid, refunded, cancelled and moved between customers; tickets opened and closed; ratings, NPS
answers and complaints; a merge and an unmerge), delivered in order or shuffled with
duplicates, one event per poll or 500, give the same profiles and memberships; the running
aggregates always equal a recompute from the stored facts; and a poll stages at most one
crm.profile.updated.v1 per customer, carrying the state after the poll."""
from __future__ import annotations

import random
from collections import Counter

import pytest
from sqlalchemy import select

from services.segmentation import definitions, fact_store, profile_store
from services.segmentation.aliases import Aliases
from services.segmentation.app import create_app
from services.segmentation.models import SegmentMemberRow
from services.segmentation.profile_compute import recompute
from tests.conftest import running_app, service_settings
from tests.segmentation.conftest import (contact, contact_event, deliver, interaction, interaction_event, new_id,
                                         order, order_event, outbox_events, profile)
from tests.segmentation.test_projection import stable

RULES = [{"name": "two orders", "rule": {"all": [{"field": "order_count", "op": "gte", "value": 2}]}},
         {"name": "vip in Tehran", "rule": {"all": [{"field": "city", "op": "eq", "value": "Tehran"},
                                                    {"field": "tags", "op": "contains", "value": "vip"}]}},
         {"name": "open ticket", "rule": {"all": [{"field": "open_tickets", "op": "gte", "value": 1}]}},
         {"name": "unhappy", "rule": {"any": [{"field": "nps", "op": "lte", "value": 6},
                                              {"field": "complaints_90d", "op": "gte", "value": 1}]}}]


def history(rng: random.Random, *, merge: bool) -> tuple[list[str], list[dict]]:
    """One business's events, each aggregate's versions in order."""
    ids = [new_id() for _ in range(4)]
    events = [contact_event("created", contact(cid, 1, tags=rng.choice([["vip"], []]))) for cid in ids]
    events += [contact_event("updated", contact(cid, 2, addresses=[{"city": rng.choice(["Tehran", "Shiraz"]),
                                                                    "country": "IR"}])) for cid in ids[:2]]
    for _ in range(14):
        oid, owner = new_id(), rng.choice(ids)
        currency = rng.choice(["USD", "IRR"])
        total = str(rng.randint(1, 9) * (10 if currency == "USD" else 100000))
        days = rng.choice([1, 2, 3, 40, 200])
        lines = [{"sku": f"S{rng.randint(1, 4)}", "category": rng.choice(["tea", "rug"])}]
        versions = [order(oid, owner, 1, total=total, currency=currency, placed_days_ago=days, lines=lines)]
        for step in rng.sample(["paid", "refunded", "cancelled", "moved"], k=rng.randint(0, 2)):
            v = versions[-1]
            nxt = dict(v, version=v["version"] + 1)
            if step == "paid":
                nxt["status"] = "paid"
            elif step == "refunded":
                nxt.update(status="partially_refunded", refunded_amount=str(int(total) // 2),
                           refunds=[{"id": "r1", "amount": str(int(total) // 2)}])
            elif step == "cancelled":
                nxt["status"] = "cancelled"
            else:
                nxt["customer_id"] = rng.choice(ids)
            versions.append(nxt)
        events += [order_event(v) for v in versions]
    for _ in range(16):
        iid, owner = new_id(), rng.choice(ids)
        kind = rng.choice(["call", "support_ticket", "feedback", "campaign_opened", "email"])
        fields = {}
        if kind == "support_ticket":
            fields["status"] = "open"
        if kind == "feedback":
            fields.update(rating=rng.randint(1, 5), nps=rng.choice([None, 3, 9]),
                          kind=rng.choice(["complaint", "praise"]))
        days = rng.choice([1, 5, 30, 120])
        versions = [interaction(iid, owner, 1, type=kind, channel=rng.choice(["web", "phone"]), days_ago=days,
                                **fields)]
        if kind == "support_ticket" and rng.random() < .5:
            versions.append(dict(versions[0], version=2, status="resolved"))
        if rng.random() < .2:
            versions.append(dict(versions[-1], version=versions[-1]["version"] + 1, customer_id=rng.choice(ids)))
        events += [interaction_event(v) for v in versions]
    if merge:
        a, b = ids[0], ids[1]
        events.append(contact_event("merged", contact(a, 3), merged_contact_ids=[b], merge_ids=["m1"]))
        events.append(order_event(order(new_id(), b, 1, total="7.00")))  # an order of b arriving after the merge
        if rng.random() < .5:
            events.append(contact_event("unmerged", contact(a, 4), restored_contact_id=b, merge_id="m1",
                                        restored_contact=contact(b, 4)))
    return ids, events


async def state(client, ids: list[str]) -> tuple:
    profiles = {cid: stable(await profile(client, cid)) for cid in ids}
    async with client.app.state.ctx.session_factory() as session:
        # Current memberships only: a customer who entered and left within one poll never entered.
        members = (await session.execute(select(SegmentMemberRow.segment_id, SegmentMemberRow.customer_id)
                                         .where(SegmentMemberRow.active.is_(True)))).all()
    segments = {s["id"]: s["name"] for s in (await client.get("/v1/segments")).json()["items"]}
    return profiles, sorted((segments[s], c) for s, c in members)


async def recomputed_from_facts(client, ids: list[str]) -> dict[str, dict]:
    """Each profile as a recompute from every fact of its group would make it."""
    ctx = client.app.state.ctx
    async with ctx.session_factory() as session:
        aliases, found = Aliases(session), await definitions.current(session)
        records = await profile_store.load_records(session, ids)
        out = {}
        for cid, record in records.items():
            survivor = await aliases.survivor(cid)
            group = await aliases.group(cid) if survivor == cid else []
            orders = await fact_store.facts_of(session, fact_store.ORDER_FACTS, group)
            interactions = await fact_store.facts_of(session, fact_store.INTERACTION_FACTS, group)
            again = recompute(record, orders, interactions, record["updated_at"], found.edges,
                              ctx.settings.segmentation_clv_horizon_years)
            out[cid] = stable(profile_store.public(again))
    return out


def differences(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """customer -> {field: (a's value, b's value)} where the profiles in `a` differ from `b`'s."""
    out = {}
    for cid, left in a.items():
        right = b.get(cid, {})
        fields = {k: (left.get(k), right.get(k)) for k in set(left) | set(right) if left.get(k) != right.get(k)}
        if fields:
            out[cid] = fields
    return out


@pytest.mark.parametrize("seed", range(4))
async def test_polls_of_any_size_end_in_the_same_profiles(seg, database_factory, seed):
    rng = random.Random(seed)
    ids, events = history(rng, merge=seed % 2 == 1)
    for body in RULES:
        assert (await seg.post("/v1/segments", json=body)).status_code == 201
    await deliver(seg, *events)
    reference = await state(seg, ids)
    assert reference[1], "the histories should make some memberships"
    live = {cid: p for cid, p in reference[0].items() if p["status"] != "merged"}
    assert differences(live, await recomputed_from_facts(seg, ids)) == {}

    shuffled = events + rng.sample(events, k=10)
    rng.shuffle(shuffled)
    for poll_size, stream in ((500, events), (500, shuffled), (7, shuffled), (1, shuffled)):
        url = await database_factory.fresh("segmentation")
        async with running_app(create_app(service_settings("segmentation", url))) as other:
            for body in RULES:
                assert (await other.post("/v1/segments", json=body)).status_code == 201
            outcomes = await deliver(other, *stream, poll_size=poll_size)
            assert "dead_lettered" not in outcomes
            assert await state(other, ids) == reference, (poll_size, "shuffled" if stream is shuffled else "in order")
            if poll_size == 500 and stream is events:
                updates = await outbox_events(other, "crm.profile.updated.v1")
                per_customer = Counter(e["subject"] for e in updates)
                assert set(per_customer.values()) == {1}  # one poll: one update per customer at most
                for event in updates:
                    assert stable(event["data"]["profile"]) == reference[0][event["subject"]]


async def test_a_replay_changes_nothing_and_stages_nothing(seg):
    ids, events = history(random.Random(9), merge=True)
    await deliver(seg, *events, poll_size=50)
    before, staged = await state(seg, ids), len(await outbox_events(seg))
    assert set(await deliver(seg, *events, poll_size=50)) == {"duplicate"}
    assert await state(seg, ids) == before and len(await outbox_events(seg)) == staged
