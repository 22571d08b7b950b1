"""The interactions API on a real (migrated) database: record, read, list, timeline, tickets,
feedback summary, and the events each write stages."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import jsonschema

from services.common.event_catalog import envelope_schema
from services.common.snapshots import stage_snapshots
from services.interactions.event_schemas import INTERACTION_EVENTS
from services.interactions.interaction_snapshots import SNAPSHOTS
from tests.interactions.conftest import contact_event, contact_snapshot, feed_contacts, problem, staged

SCHEMAS = {event.type: envelope_schema(event) for event in INTERACTION_EVENTS}
NOW = datetime.now(timezone.utc)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


async def record(client, **body) -> dict:
    response = await client.post("/v1/interactions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_record_and_read_back_with_etag_and_event(interactions):
    customer = str(uuid.uuid4())
    created = await record(interactions, customer={"id": customer}, type="call", channel="phone", direction="outbound",
                           occurred_at=at(5), subject="Follow-up", notes="Wants a refund", duration_seconds=310,
                           agent="sara", outcome="answered", metadata={"queue": "billing", "attempt": 2})
    assert created["customer_id"] == customer and created["version"] == 1
    read = await interactions.get(f"/v1/interactions/{created['id']}")
    assert read.status_code == 200 and read.headers["etag"] == '"1"'
    assert read.json() == created
    [event] = await staged(interactions)
    assert event["type"] == "crm.interaction.recorded.v1"
    assert (event["subject"], event["aggregateid"], event["sequence"]) == (customer, created["id"], 1)
    assert event["data"]["interaction"] == created
    problem(await interactions.get(f"/v1/interactions/{uuid.uuid4()}"), 404)


async def test_known_email_is_attributed_at_once_and_unknown_kept_with_its_reference(interactions):
    contact = contact_snapshot(emails=["reza@example.com"], phones=["+989121234567"])
    await feed_contacts(interactions, contact_event("created", contact))
    by_email = await record(interactions, customer={"email": "REZA@example.com"}, type="email", channel="email",
                            direction="inbound")
    by_phone = await record(interactions, customer={"phone": "09121234567"}, type="sms", channel="sms",
                            direction="outbound")
    unknown = await record(interactions, customer={"email": "nobody@example.com"}, type="email", channel="email",
                           direction="inbound")
    assert by_email["customer_id"] == by_phone["customer_id"] == contact["id"]
    assert unknown["customer_id"] is None and unknown["customer"] == {"email": "nobody@example.com"}
    [event] = [e for e in await staged(interactions) if e["aggregateid"] == unknown["id"]]
    assert event["subject"] == unknown["id"]  # keyed by itself until attributed


async def test_timeline_newest_first_filters_and_cursor(interactions):
    customer = str(uuid.uuid4())
    kinds = [("page_view", "web"), ("email", "email"), ("call", "phone"), ("page_view", "app"), ("chat", "chat")]
    ids = []
    for n, (kind, channel) in enumerate(kinds * 3):  # 15, one minute apart, oldest first
        body = {"customer": {"id": customer}, "type": kind, "channel": channel, "occurred_at": at(60 - n)}
        if kind in ("email", "call", "chat"):
            body["direction"] = "inbound"
        ids.append((await record(interactions, **body))["id"])
    await record(interactions, customer={"id": str(uuid.uuid4())}, type="visit", channel="web")  # someone else

    seen, cursor = [], None
    while True:
        page = (await interactions.get(f"/v1/customers/{customer}/timeline",
                                       params={"limit": 4, **({"cursor": cursor} if cursor else {})})).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids[::-1]

    views = (await interactions.get(f"/v1/customers/{customer}/timeline", params={"type": "page_view"})).json()
    assert len(views["items"]) == 6 and {i["type"] for i in views["items"]} == {"page_view"}
    both = (await interactions.get(f"/v1/customers/{customer}/timeline",
                                   params=[("channel", "phone"), ("channel", "chat")])).json()
    assert {i["channel"] for i in both["items"]} == {"phone", "chat"} and len(both["items"]) == 6
    window = (await interactions.get(f"/v1/customers/{customer}/timeline",
                                     params={"occurred_after": at(60), "occurred_before": at(55)})).json()
    assert [i["id"] for i in window["items"]] == ids[:5][::-1]
    empty = await interactions.get(f"/v1/customers/{uuid.uuid4()}/timeline")
    assert empty.status_code == 200 and empty.json() == {"items": [], "next_cursor": None}


async def test_list_by_campaign_type_agent_and_time(interactions):
    for n in range(6):
        await record(interactions, customer={"email": f"c{n}@example.com"}, type="campaign_sent", channel="email",
                     campaign_id="spring-sale", occurred_at=at(30 - n))
    await record(interactions, customer={"email": "c0@example.com"}, type="campaign_opened", channel="email",
                 campaign_id="spring-sale")
    await record(interactions, customer={"email": "x@example.com"}, type="campaign_sent", channel="sms",
                 campaign_id="other")
    await record(interactions, customer={"id": str(uuid.uuid4())}, type="call", channel="phone", direction="outbound", agent="sara")

    sent = (await interactions.get("/v1/interactions", params={"campaign_id": "spring-sale",
                                                              "type": "campaign_sent", "limit": 4})).json()
    assert len(sent["items"]) == 4 and sent["next_cursor"]
    rest = (await interactions.get("/v1/interactions", params={"campaign_id": "spring-sale", "type": "campaign_sent",
                                                              "limit": 4, "cursor": sent["next_cursor"]})).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    times = [i["occurred_at"] for i in sent["items"] + rest["items"]]
    assert times == sorted(times, reverse=True)
    assert [i["agent"] for i in (await interactions.get("/v1/interactions", params={"agent": "sara"})).json()["items"]] == ["sara"]
    recent = (await interactions.get("/v1/interactions", params={"occurred_after": at(28)})).json()["items"]
    assert len(recent) == 4 + 3  # sends 28 to 25 minutes ago (inclusive bound), the opening, the sms, the call
    problem(await interactions.get("/v1/interactions", params={"cursor": "junk"}), 422)
    problem(await interactions.get("/v1/interactions", params={"type": "fax"}), 422)
    problem(await interactions.get("/v1/interactions", params={"occurred_after": "2026-01-01T00:00:00"}), 422)


async def test_ticket_status_changes_with_if_match_and_facts_do_not(interactions):
    ticket = await record(interactions, customer={"id": str(uuid.uuid4())}, type="support_ticket", channel="email",
                          subject="Broken zipper")
    assert ticket["status"] == "open"
    stale = await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "pending"},
                                     headers={"If-Match": '"7"'})
    assert problem(stale, 412)["current_version"] == 1
    pending = await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "pending", "agent": "omid"},
                                       headers={"If-Match": '"1"'})
    assert pending.status_code == 200 and pending.headers["etag"] == '"2"'
    closed = await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "closed"})
    assert closed.json()["status"] == "closed" and closed.json()["version"] == 3
    reopen = problem(await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "open"}), 409)
    assert reopen["current_status"] == "closed"
    updates = await staged(interactions, "crm.interaction.updated.v1")
    assert [(e["sequence"], e["data"]["changed_fields"], e["data"]["reason"]) for e in updates] == [
        (2, ["agent", "status"], "ticket_changed"), (3, ["status"], "ticket_changed")]

    visit = await record(interactions, customer={"visitor_id": "v"}, type="visit", channel="store")
    fact = problem(await interactions.patch(f"/v1/interactions/{visit['id']}", json={"notes": "x"}), 409)
    assert "does not change" in fact["detail"]
    problem(await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "lost"}), 422)
    problem(await interactions.patch(f"/v1/interactions/{uuid.uuid4()}", json={"status": "open"}), 404)


async def test_idempotency_key_on_single_record(interactions):
    body = {"customer": {"visitor_id": "v-1"}, "type": "download", "channel": "web", "url": "https://x.example/a.pdf"}
    first = await interactions.post("/v1/interactions", json=body, headers={"Idempotency-Key": "k-1"})
    again = await interactions.post("/v1/interactions", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await interactions.post("/v1/interactions", json={**body, "url": "https://x.example/b.pdf"},
                                    headers={"Idempotency-Key": "k-1"})
    problem(other, 422)
    assert len(await staged(interactions)) == 1


async def test_feedback_summary(interactions):
    customer = str(uuid.uuid4())
    base = {"customer": {"id": customer}, "channel": "web"}
    for kind, days in (("comment", 1), ("suggestion", 2), ("complaint", 10), ("complaint", 40), ("complaint", 100)):
        await record(interactions, **base, type="feedback", kind=kind, occurred_at=at(days * 24 * 60))
    for rating, nps in ((5, 10), (4, 9), (2, 7), (1, 3), (3, None)):
        await record(interactions, **base, type="survey_response", rating=rating,
                     **({"nps": nps} if nps is not None else {}))
    await record(interactions, **base, type="support_ticket", rating=4)
    summary = (await interactions.get(f"/v1/customers/{customer}/feedback-summary")).json()
    assert summary["counts"] == {"comment": 1, "complaint": 3, "suggestion": 1, "survey_response": 5}
    assert (summary["ratings"], summary["average_rating"]) == (6, round((5 + 4 + 2 + 1 + 3 + 4) / 6, 2))
    assert summary["nps"] == {"responses": 4, "promoters": 2, "passives": 1, "detractors": 1, "score": 25.0}
    assert (summary["complaints_last_30_days"], summary["complaints_last_90_days"]) == (1, 2)
    nothing = (await interactions.get(f"/v1/customers/{uuid.uuid4()}/feedback-summary")).json()
    assert nothing["nps"]["score"] is None and nothing["average_rating"] is None


async def test_every_staged_event_validates_against_its_schema(interactions):
    contact = contact_snapshot(visitors=["v-9"])
    ticket = await record(interactions, customer={"visitor_id": "v-9"}, type="support_ticket", channel="chat")
    await interactions.patch(f"/v1/interactions/{ticket['id']}", json={"status": "resolved"})
    for _ in range(3):
        await record(interactions, customer={"visitor_id": "v-9"}, type="feedback", kind="complaint", channel="web")
    await feed_contacts(interactions, contact_event("created", contact))  # attaches: updated + complaints alert
    await feed_contacts(interactions, contact_event("erased", {**contact_snapshot(contact["id"], version=2,
                                                                                  status="erased")},
                                                    erasure_id=str(uuid.uuid4())))  # confirmed: erasure_completed
    ctx = interactions.app.state.ctx
    await stage_snapshots(ctx.engine, SNAPSHOTS, topic=ctx.topic)  # crm.interaction.snapshot.v1
    events = await staged(interactions)
    assert {e["type"] for e in events} == set(SCHEMAS)
    for event in events:
        jsonschema.validate(event, SCHEMAS[event["type"]], format_checker=jsonschema.FormatChecker())


async def test_asyncapi_document_lists_every_event(interactions):
    document = (await interactions.get("/asyncapi.json")).json()
    assert {m["name"] for m in document["components"]["messages"].values()} == set(SCHEMAS)
    assert document["channels"]["crm_interactions_v1"]["address"] == "crm.interactions.v1"
