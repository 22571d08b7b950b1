"""Snapshots of the segmentation service (services/segmentation/profile_snapshots.py): one
crm.profile.snapshot.v1 per profile and one crm.segment.member_snapshot.v1 per current
membership; and the profile projection on contact, order and interaction snapshots."""
from __future__ import annotations

import jsonschema
import pytest
from sqlalchemy import select

from services.common.event_catalog import envelope_schema
from services.common.events import build_event, rfc3339
from services.common.snapshots import stage_snapshots
from services.segmentation.event_schemas import EVENTS
from services.segmentation.models import SegmentMemberRow
from services.segmentation.profile_snapshots import SNAPSHOTS
from tests.segmentation.conftest import (contact, contact_event, deliver, interaction, interaction_event, new_id,
                                         order, order_event, outbox_events, profile)

SCHEMAS = {event.type: envelope_schema(event) for event in EVENTS}


async def static_list(seg, name: str, *, add=(), remove=()) -> str:
    sid = (await seg.post("/v1/segments", json={"name": name, "type": "static"})).json()["id"]
    for ids, method in ((add, "POST"), (remove, "DELETE")):
        for customer_id in ids:
            response = await seg.request(method, f"/v1/segments/{sid}/members", json={"customer_ids": [customer_id]})
            assert response.status_code == 200, response.text
    return sid


@pytest.mark.parametrize("batch_size", [1, 2, 3, 100])
async def test_profiles_and_current_memberships(seg, batch_size):
    a, b, c = new_id(), new_id(), new_id()
    await deliver(seg, *(contact_event("created", contact(cid)) for cid in (a, b, c)))
    await deliver(seg, order_event(order(new_id(), a)), contact_event("updated", contact(b, 2, given_name="Zahra")))
    first = await static_list(seg, "first", add=[a, b, c, b], remove=[b, c])
    await seg.post(f"/v1/segments/{first}/members", json={"customer_ids": [b]})  # b back: membership version 3
    second = await static_list(seg, "second", add=[a, c])
    before = len(await outbox_events(seg))

    ctx = seg.app.state.ctx
    counts = await stage_snapshots(ctx.engine, SNAPSHOTS, topic=ctx.topic, batch_size=batch_size)
    assert counts == {"profile": 3, "segment_membership": 4}

    staged = (await outbox_events(seg))[before:]
    assert len(staged) == 7
    for event in staged:
        jsonschema.validate(event, SCHEMAS[event["type"]], format_checker=jsonschema.FormatChecker())
    profiles = {e["aggregateid"]: e for e in staged if e["type"] == "crm.profile.snapshot.v1"}
    assert sorted(profiles) == sorted([a, b, c])
    for customer_id, event in profiles.items():
        now = await profile(seg, customer_id)
        assert event["data"] == {"profile": now}
        assert (event["subject"], event["sequence"]) == (customer_id, now["version"])
    assert profiles[b]["data"]["profile"]["given_name"] == "Zahra"

    members = [e for e in staged if e["type"] == "crm.segment.member_snapshot.v1"]
    assert sorted((e["aggregateid"], e["sequence"]) for e in members) == sorted(
        [(f"{first}:{a}", 1), (f"{first}:{b}", 3), (f"{second}:{a}", 1), (f"{second}:{c}", 1)])
    async with ctx.session_factory() as session:
        entered = {f"{r.segment_id}:{r.customer_id}": r.entered_at for r in
                   (await session.execute(select(SegmentMemberRow))).scalars()}
    for event in members:
        data = event["data"]
        assert event["subject"] == data["customer_id"]
        assert event["aggregateid"] == f"{data['segment_id']}:{data['customer_id']}"
        assert (data["reason"], data["membership_version"]) == ("snapshot", event["sequence"])
        assert data["segment_name"] == ("first" if data["segment_id"] == first else "second")
        assert data["at"] == event["time"] == rfc3339(entered[event["aggregateid"]])


def snapshot_of(event: dict) -> dict:
    """The same aggregate at the same sequence, re-published as a snapshot."""
    kind = event["type"].split(".")[1]
    return build_event(service=event["source"].rsplit("/", 1)[-1], event_type=f"crm.{kind}.snapshot.v1",
                       subject=event["subject"], aggregate_id=event["aggregateid"], sequence=event["sequence"],
                       data={key: value for key, value in event["data"].items() if key != "changed_fields"})


async def test_the_projection_skips_stale_snapshots_and_applies_newer_ones(seg):
    cid, oid, iid = new_id(), new_id(), new_id()
    created = contact_event("created", contact(cid))
    placed = order_event(order(oid, cid, total="100.00"))
    recorded = interaction_event(interaction(iid, cid, type="call"))
    assert await deliver(seg, created, placed, recorded) == ["applied"] * 3
    version = (await profile(seg, cid))["version"]

    assert await deliver(seg, *(snapshot_of(e) for e in (created, placed, recorded))) == ["stale"] * 3
    assert (await profile(seg, cid))["version"] == version

    newer = [contact_event("updated", contact(cid, 2, given_name="Maryam")),
             order_event(order(oid, cid, 2, total="250.00")),
             interaction_event(interaction(iid, cid, 2, type="email", channel="email"))]
    assert await deliver(seg, *(snapshot_of(e) for e in newer)) == ["applied"] * 3
    now = await profile(seg, cid)
    assert (now["given_name"], now["contact_version"], now["money"]["USD"]["total_spent"]) == ("Maryam", 2, "250")
    assert now["interactions_by_type"] == {"email": 1} and now["version"] > version


async def test_a_tombstone_snapshot_merges_the_profile_unless_an_unmerge_came_first(seg):
    survivor, absorbed = new_id(), new_id()
    await deliver(seg, contact_event("created", contact(survivor)), contact_event("created", contact(absorbed)),
                  order_event(order(new_id(), absorbed)))
    tombstone = contact_event("snapshot", contact(absorbed, 2, status="merged", merged_into=survivor))
    assert await deliver(seg, tombstone) == ["applied"]
    gone = await profile(seg, absorbed)
    assert (gone["status"], gone["merged_into"]) == ("merged", survivor)
    assert (await profile(seg, survivor))["order_count"] == 1
    unmerged = contact_event("unmerged", contact(survivor, 2), restored_contact_id=absorbed, merge_id="m-1",
                             restored_contact=contact(absorbed, 3))
    assert await deliver(seg, unmerged) == ["applied"]
    back = await profile(seg, absorbed)
    assert (back["status"], back["order_count"], (await profile(seg, survivor))["order_count"]) == ("active", 1, 0)

    # Another pair, the unmerge first: the older tombstone snapshot (not stale for the consumer,
    # which saw the unmerge under the survivor's id) must not merge the restored contact again.
    survivor, restored = new_id(), new_id()
    await deliver(seg, contact_event("created", contact(survivor)), contact_event("created", contact(restored)))
    await deliver(seg, contact_event("unmerged", contact(survivor, 3), restored_contact_id=restored, merge_id="m-2",
                                     restored_contact=contact(restored, 3)))
    late = contact_event("snapshot", contact(restored, 2, status="merged", merged_into=survivor))
    assert await deliver(seg, late) == ["applied"]
    assert (await profile(seg, restored))["status"] == "active"
