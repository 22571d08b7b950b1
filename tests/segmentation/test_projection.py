"""The profile projection: built from the three topics, exact under duplicates, re-ordering and
replays, and following merges, unmerges and erasure."""
from __future__ import annotations

import random

from tests.segmentation.conftest import (contact, contact_event, deliver, interaction, interaction_event, new_id,
                                         order, order_event, outbox_events, profile)

VOLATILE = ("version", "updated_at", "updated_from_events_at", "created_at")


def stable(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in VOLATILE}


def story(cid: str) -> list[dict]:
    o1, o2, o3, i1, i2 = (new_id() for _ in range(5))
    return [
        contact_event("created", contact(cid, 1)),
        contact_event("updated", contact(cid, 2, tags=["vip", "wholesale"], lifecycle_stage="customer")),
        order_event(order(o1, cid, 1, total="100.00")),
        order_event(order(o1, cid, 2, total="100.00", status="paid"), "paid"),
        order_event(order(o1, cid, 3, total="100.00", status="partially_refunded", refunded="30"), "refunded"),
        order_event(order(o2, cid, 1, total="2500000", currency="IRR", placed_days_ago=40,
                          lines=[{"sku": "RUG-1", "category": "home"}])),
        order_event(order(o3, cid, 1, total="50.00", placed_days_ago=3)),
        order_event(order(o3, cid, 2, total="50.00", status="cancelled", placed_days_ago=3), "cancelled"),
        interaction_event(interaction(i1, cid, 1, type="feedback", channel="web", kind="complaint", rating=2)),
        interaction_event(interaction(i2, cid, 1, type="support_ticket", channel="email", status="open")),
        interaction_event(interaction(i2, cid, 2, type="support_ticket", channel="email", status="resolved")),
    ]


async def test_profile_from_the_three_topics(seg):
    cid = new_id()
    await deliver(seg, *story(cid))
    p = await profile(seg, cid)
    assert p["order_count"] == 2 and p["cancelled_count"] == 1 and p["refund_count"] == 1
    assert p["money"]["USD"]["total_spent"] == "70" and p["money"]["IRR"]["total_spent"] == "2500000"
    assert p["money"]["USD"]["order_count"] == 1
    assert p["categories"] == ["home", "tea"] and p["skus"] == ["RUG-1", "TEA-1"]
    assert p["tags"] == ["vip", "wholesale"] and p["consent_email"] is True and p["consent_sms"] is False
    assert p["city"] == "Tehran" and p["email"].endswith("@example.com")
    assert p["interaction_count"] == 2 and p["open_tickets"] == 0 and p["complaints_90d"] == 1
    assert p["avg_rating"] == 2.0 and p["interactions_by_channel"] == {"email": 1, "web": 1}
    assert p["rfm_recency"] is not None and p["rfm_segment"] and 0 <= p["churn_risk"] <= 1
    assert p["updated_from_events_at"]
    events = await outbox_events(seg, "crm.profile.updated.v1")
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["data"]["profile"]["order_count"] == 2 and events[-1]["subject"] == cid


async def test_duplicates_reordering_and_replay_end_in_the_same_profile(seg, database_factory):
    from services.segmentation.app import create_app
    from tests.conftest import running_app, service_settings

    cid = new_id()
    events = story(cid)
    await deliver(seg, *events)
    in_order = stable(await profile(seg, cid))
    for seed in range(3):
        shuffled = events + random.Random(seed).sample(events, k=6)
        random.Random(seed + 100).shuffle(shuffled)
        url = await database_factory.fresh("segmentation")
        async with running_app(create_app(service_settings("segmentation", url))) as other:
            await deliver(other, *shuffled)
            assert stable(await profile(other, cid)) == in_order
    # a replay of everything on the same database changes nothing: no new version, no event
    before = await outbox_events(seg)
    assert set(await deliver(seg, *events)) == {"duplicate"}
    assert len(await outbox_events(seg)) == len(before)


async def test_an_order_update_replaces_its_contribution(seg):
    cid, oid = new_id(), new_id()
    await deliver(seg, order_event(order(oid, cid, 1, total="10.00")), order_event(order(oid, cid, 2, total="12.50")))
    p = await profile(seg, cid)
    assert p["order_count"] == 1 and p["money"]["USD"]["total_spent"] == "12.5"


async def test_merge_folds_and_unmerge_splits(seg):
    a, b = new_id(), new_id()
    oa, ob = new_id(), new_id()
    await deliver(seg, contact_event("created", contact(a, 1)), contact_event("created", contact(b, 1)),
                  order_event(order(oa, a, 1, total="10")), order_event(order(ob, b, 1, total="5")))
    await deliver(seg, contact_event("merged", contact(a, 2), merged_contact_ids=[b], merge_ids=["m1"]))
    pa, pb = await profile(seg, a), await profile(seg, b)
    assert pa["order_count"] == 2 and pa["money"]["USD"]["total_spent"] == "15"
    assert pb["status"] == "merged" and pb["merged_into"] == a and pb["order_count"] == 0
    # the orders service follows the merge: the order moves to a; nothing doubles
    await deliver(seg, order_event(dict(order(ob, a, 2, total="5"), merged_from=b), "attributed"))
    assert (await profile(seg, a))["order_count"] == 2
    # unmerge: the contact comes back; the orders service moves its order back
    await deliver(seg, contact_event("unmerged", contact(a, 3), restored_contact_id=b, merge_id="m1",
                                     restored_contact=contact(b, 3)))
    await deliver(seg, order_event(order(ob, b, 3, total="5"), "attributed"))
    pa, pb = await profile(seg, a), await profile(seg, b)
    assert pa["order_count"] == 1 and pb["order_count"] == 1 and pb["status"] == "active"


async def test_erasure_removes_personal_fields(seg):
    cid = new_id()
    await deliver(seg, contact_event("created", contact(cid, 1)), order_event(order(new_id(), cid)))
    tombstone = {"id": cid, "version": 2, "status": "erased", "created_at": "2026-01-01T00:00:00Z",
                 "updated_at": "2026-02-01T00:00:00Z"}
    await deliver(seg, contact_event("erased", tombstone, erasure_id="e1"))
    p = await profile(seg, cid)
    assert p["status"] == "erased"
    assert all(p[f] is None for f in ("given_name", "family_name", "email", "phone", "city", "birth_date"))
    assert p["tags"] == [] and p["consent_email"] is False
    [confirmation] = await outbox_events(seg, "crm.profile.erasure_completed.v1")
    assert (confirmation["subject"], confirmation["data"]["erasure_id"]) == (cid, "e1")
    assert (confirmation["data"]["service"], confirmation["data"]["records_erased"]) == ("segmentation", 1)


async def test_profile_api_lists_filters_and_sorts(seg):
    ids = [new_id() for _ in range(5)]
    for n, cid in enumerate(ids):
        await deliver(seg, contact_event("created", contact(cid, 1)),
                      *[order_event(order(new_id(), cid, total="10")) for _ in range(n)])
    rule = '{"field": "order_count", "op": "gte", "value": 1}'
    seen, cursor = [], None
    while True:
        page = (await seg.get("/v1/profiles", params={"rule": rule, "sort": "-order_count", "limit": 2,
                                                      **({"cursor": cursor} if cursor else {})})).json()
        seen += [p["order_count"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [4, 3, 2, 1]
    bad = await seg.get("/v1/profiles", params={"sort": "nope"})
    assert bad.status_code == 422 and "nope" in bad.json()["detail"]
    missing = await seg.get(f"/v1/profiles/{new_id()}")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
