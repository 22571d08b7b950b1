"""Duplicates, merge and unmerge through the API, on a real (migrated) database."""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select, text

from services.contacts import merging
from services.contacts.models import ConsentEventRow, ContactRow, IdentityRow, MergeRow, kernel
from tests.databases import POSTGRES_URL

ALI = {"given_name": "علی", "family_name": "کریمی", "emails": ["ali@example.com"], "phones": ["09121111111"],
       "tags": ["vip"], "attributes": {"tier": "gold"}, "lifecycle_stage": "lead",
       "external_ids": [{"system": "shopify", "id": "c-1"}],
       "consent": {"email": {"status": "granted", "source": "signup", "at": "2026-01-01T10:00:00Z"}},
       "addresses": [{"city": "تهران", "country": "IR"}]}
ALI_TOO = {"given_name": "علي", "family_name": "كريمي", "emails": ["ali.k@work.example"], "phones": ["09122222222"],
           "tags": ["b2b"], "attributes": {"tier": "silver", "visits": 4}, "lifecycle_stage": "customer",
           "birth_date": "1990-05-17", "external_ids": [{"system": "woo", "id": "w-7"}],
           "consent": {"email": {"status": "withdrawn", "source": "unsubscribe", "at": "2026-02-01T10:00:00Z"},
                       "sms": {"status": "granted", "source": "checkout", "at": "2026-01-15T10:00:00Z"}},
           "addresses": [{"city": "تهران", "country": "IR"}, {"city": "کرج", "country": "IR"}]}
TABLES = {"contacts": ContactRow.__table__, "identities": IdentityRow.__table__, "merges": MergeRow.__table__,
          "outbox": kernel.outbox, "consent": ConsentEventRow.__table__}


async def create(client, body: dict) -> dict:
    response = await client.post("/v1/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def counts(client) -> dict[str, int]:
    async with client.app.state.ctx.session_factory() as session:
        return {name: (await session.execute(select(func.count()).select_from(table))).scalar()
                for name, table in TABLES.items()}


async def events(client, event_type: str) -> list[dict]:
    async with client.app.state.ctx.session_factory() as session:
        payloads = (await session.execute(select(kernel.outbox.c.payload).where(kernel.outbox.c.type == event_type)
                                          .order_by(kernel.outbox.c.position))).scalars()
        return [json.loads(p) for p in payloads]


async def merge(client, survivor: dict, *others: dict, **body):
    return await client.post(f"/v1/contacts/{survivor['id']}/merge",
                             json={"contact_ids": [o["id"] for o in others], **body})


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


async def test_dry_run_changes_nothing_and_reports_the_conflicts(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    before = await counts(contacts)
    for response in (await merge(contacts, survivor, other, dry_run=True),
                     await contacts.post(f"/v1/contacts/{survivor['id']}/merge", params={"dry_run": "true"},
                                         json={"contact_ids": [other["id"]]})):
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["dry_run"] is True and result["merges"] == []
        assert result["survivor"]["emails"] == ["ali@example.com", "ali.k@work.example"]
        conflicts = {c["field"]: c for c in result["conflicts"]}
        assert {"given_name", "family_name", "attributes.tier", "consent.email", "lifecycle_stage"} <= set(conflicts)
        assert conflicts["attributes.tier"]["kept"] == "gold"
        assert conflicts["attributes.tier"]["absorbed_value"] == "silver"
    assert await counts(contacts) == before
    assert (await contacts.get(f"/v1/contacts/{other['id']}")).json()["status"] == "active"
    assert (await contacts.get(f"/v1/contacts/{survivor['id']}")).json()["version"] == 1


async def test_merge_combines_identities_consent_tags_attributes_and_fills_empty_fields(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    response = await merge(contacts, survivor, other)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    merged = response.json()["survivor"]
    assert merged["version"] == 2 and merged["given_name"] == "علی"
    assert merged["emails"] == ["ali@example.com", "ali.k@work.example"]
    assert merged["phones"] == ["+989121111111", "+989122222222"]
    assert {(e["system"], e["id"]) for e in merged["external_ids"]} == {("shopify", "c-1"), ("woo", "w-7")}
    assert merged["consent"]["email"]["status"] == "withdrawn"  # the absorbed statement is more recent
    assert merged["consent"]["sms"]["status"] == "granted"
    assert merged["tags"] == ["vip", "b2b"] and merged["attributes"] == {"tier": "gold", "visits": 4}
    assert merged["birth_date"] == "1990-05-17" and merged["lifecycle_stage"] == "customer"
    assert [a["city"] for a in merged["addresses"]] == ["تهران", "کرج"]
    assert (await contacts.get(f"/v1/contacts/{survivor['id']}")).json() == merged
    [record] = response.json()["merges"]
    assert record["absorbed_id"] == other["id"] and record["survivor_id"] == survivor["id"]
    assert record["contributions"]["emails"] == ["ali.k@work.example"]
    assert record["contributions"]["fields"] == {"birth_date": "1990-05-17"}
    assert set(record["contributions"]["consent"]) == {"email", "sms"}
    history = (await contacts.get(f"/v1/contacts/{survivor['id']}/consent-history")).json()
    assert [(h["channel"], h["status"]) for h in history][-2:] == [("email", "withdrawn"), ("sms", "granted")]


async def test_absorbed_contact_redirects_and_its_email_finds_the_survivor(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    assert (await merge(contacts, survivor, other)).status_code == 200
    redirect = await contacts.get(f"/v1/contacts/{other['id']}")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"/v1/contacts/{survivor['id']}"
    for params in ({"email": "ALI.K@work.example"}, {"phone": "09122222222"}, {"system": "woo", "external_id": "w-7"}):
        found = await contacts.get("/v1/contacts/lookup", params=params)
        assert found.status_code == 200 and found.json()["id"] == survivor["id"], params
    again = await contacts.post("/v1/contacts", json={"emails": ["ali.k@work.example"]})
    assert problem(again, 409)["existing_contact_id"] == survivor["id"]


async def test_one_merged_event_names_the_absorbed_contacts(contacts):
    survivor = await create(contacts, ALI)
    others = [await create(contacts, ALI_TOO), await create(contacts, {"given_name": "Ali", "emails": ["z@x.io"]})]
    response = await merge(contacts, survivor, *others)
    assert response.status_code == 200, response.text
    [event] = await events(contacts, "crm.contact.merged.v1")
    assert event["subject"] == survivor["id"] and event["sequence"] == 2
    assert event["data"]["merged_contact_ids"] == [o["id"] for o in others]
    assert event["data"]["merge_ids"] == [m["id"] for m in response.json()["merges"]]
    assert event["data"]["contact"]["emails"] == ["ali@example.com", "ali.k@work.example", "z@x.io"]
    assert any(c["field"] == "attributes.tier" for c in event["data"]["conflicts"])
    assert (await counts(contacts))["outbox"] == 8  # three created, one merged, and their audit entries


async def test_unmerge_restores_the_absorbed_contact_and_takes_back_what_it_brought(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    [record] = (await merge(contacts, survivor, other)).json()["merges"]
    response = await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge", json={"merge_id": record["id"]})
    assert response.status_code == 200, response.text
    body = response.json()
    restored, after = body["restored"], body["survivor"]
    assert restored["id"] == other["id"] and restored["status"] == "active" and restored["merged_into"] is None
    assert restored["version"] == 3  # the tombstone was 2
    assert restored["emails"] == ["ali.k@work.example"] and restored["consent"] == other["consent"]
    assert after["version"] == 3 and after["emails"] == ["ali@example.com"] and after["phones"] == ["+989121111111"]
    assert after["tags"] == ["vip"] and after["attributes"] == {"tier": "gold"} and after["birth_date"] is None
    assert after["consent"]["email"]["status"] == "granted" and "sms" not in after["consent"]
    assert after["lifecycle_stage"] == "lead"
    assert body["merge"]["unmerged_at"] is not None
    found = await contacts.get("/v1/contacts/lookup", params={"email": "ali.k@work.example"})
    assert found.status_code == 200 and found.json()["id"] == other["id"]
    assert (await contacts.get(f"/v1/contacts/{other['id']}")).json() == restored
    [event] = await events(contacts, "crm.contact.unmerged.v1")
    assert event["subject"] == survivor["id"] and event["sequence"] == 3
    assert event["data"]["restored_contact_id"] == other["id"] and event["data"]["merge_id"] == record["id"]
    assert event["data"]["restored_contact"] == restored and event["data"]["contact"] == after


async def test_unmerge_twice_is_409_and_by_contact_id_works_too(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    await merge(contacts, survivor, other)
    url = f"/v1/contacts/{survivor['id']}/unmerge"
    assert (await contacts.post(url, json={"contact_id": other["id"]})).status_code == 200
    assert "already undone" in problem(await contacts.post(url, json={"contact_id": other["id"]}), 409)["detail"]
    assert len(await events(contacts, "crm.contact.unmerged.v1")) == 1


async def test_merge_records_list_for_survivor_and_absorbed(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    [record] = (await merge(contacts, survivor, other)).json()["merges"]
    for contact in (survivor, other):
        page = (await contacts.get(f"/v1/contacts/{contact['id']}/merges")).json()
        assert [(m["id"], m["survivor_id"], m["absorbed_id"]) for m in page["items"]] == [
            (record["id"], survivor["id"], other["id"])]
        assert page["items"][0]["contributions"]["tags"] == ["b2b"] and page["items"][0]["unmerged_at"] is None
    assert problem(await contacts.get("/v1/contacts/00000000-0000-4000-8000-000000000000/merges"), 404)


async def test_stale_if_match_is_412_and_writes_nothing(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    await contacts.patch(f"/v1/contacts/{survivor['id']}", json={"occupation": "chef"})
    before = await counts(contacts)
    stale = await contacts.post(f"/v1/contacts/{survivor['id']}/merge", json={"contact_ids": [other["id"]]},
                                headers={"If-Match": '"1"'})
    assert problem(stale, 412)["current_version"] == 2
    assert await counts(contacts) == before


async def test_a_change_racing_the_merge_fails_it_with_412_and_nothing_half_written(contacts, monkeypatch):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    read_early = merging.load_participants

    async def read_before_a_concurrent_patch(session, survivor_id, absorbed_ids, **options):
        snapshot = await read_early(session, survivor_id, absorbed_ids, **options)
        # Someone saves the survivor after the merge read it (as another transaction would on PostgreSQL).
        await session.execute(ContactRow.__table__.update().where(ContactRow.id == survivor_id)
                              .values(version=ContactRow.version + 1))
        return snapshot

    monkeypatch.setattr(merging, "load_participants", read_before_a_concurrent_patch)
    before = await counts(contacts)
    assert "changed since version 1" in problem(await merge(contacts, survivor, other), 412)["detail"]
    assert await counts(contacts) == before  # the absorbed tombstone, its freed identities: all rolled back
    monkeypatch.undo()
    assert (await contacts.get(f"/v1/contacts/{other['id']}")).json()["status"] == "active"
    found = await contacts.get("/v1/contacts/lookup", params={"email": "ali.k@work.example"})
    assert found.json()["id"] == other["id"]
    assert (await contacts.get(f"/v1/contacts/{survivor['id']}")).json()["version"] == 1


async def wait_for_a_lock_waiter(client) -> None:
    """Until some query of the test database waits on a row lock (PostgreSQL)."""
    for _ in range(1000):
        async with client.app.state.ctx.engine.connect() as connection:
            waiting = (await connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))).scalar()
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("nothing ever waited on the merge's row locks")


@pytest.mark.skipif(not POSTGRES_URL, reason="SQLite has one writer: no other transaction can run mid-merge")
async def test_a_patch_racing_the_merge_on_postgres_waits_and_then_fails_412(contacts, monkeypatch):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    read, racing = merging.load_participants, []

    async def read_then_let_a_patch_race(session, survivor_id, absorbed_ids, **options):
        snapshot = await read(session, survivor_id, absorbed_ids, **options)
        racing.append(asyncio.create_task(contacts.patch(f"/v1/contacts/{survivor_id}", json={"occupation": "chef"})))
        await wait_for_a_lock_waiter(contacts)  # the PATCH read version 1 and now waits on the merge's lock
        return snapshot

    monkeypatch.setattr(merging, "load_participants", read_then_let_a_patch_race)
    merged = await merge(contacts, survivor, other)
    assert merged.status_code == 200, merged.text
    assert problem(await racing[0], 412)  # exactly one writer wins; no lost update, nothing half-written
    current = (await contacts.get(f"/v1/contacts/{survivor['id']}")).json()
    assert current == merged.json()["survivor"] and current["occupation"] is None


async def test_bad_merge_input_is_4xx_problem_json(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    url = f"/v1/contacts/{survivor['id']}/merge"
    assert problem(await contacts.post(url, json={"contact_ids": [survivor["id"]]}), 422)["errors"][0]["field"] == \
        "contact_ids.0"
    missing = problem(await contacts.post(url, json={"contact_ids": [other["id"], "no-such-id"]}), 404)
    assert missing["missing_contact_ids"] == ["no-such-id"]
    assert problem(await contacts.post("/v1/contacts/00000000-0000-4000-8000-000000000000/merge", json={"contact_ids": [other["id"]]}), 404)
    assert problem(await contacts.post(url, json={"contact_ids": []}), 422)["errors"][0]["field"] == "contact_ids"
    assert problem(await contacts.post(url, json={"contact_ids": [other["id"]], "dryrun": True}), 422)[
        "errors"][0]["message"] == "unknown field"
    assert problem(await contacts.post(url, json={"contact_ids": [f"id-{i}" for i in range(51)]}), 422)
    assert problem(await contacts.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert (await counts(contacts))["merges"] == 0
    await merge(contacts, survivor, other)
    third = await create(contacts, {"given_name": "Reza"})
    again = problem(await merge(contacts, third, other), 409)
    assert again["merged_into"] == survivor["id"] and "already merged" in again["detail"]
    into_tombstone = problem(await merge(contacts, other, third), 409)
    assert into_tombstone["merged_into"] == survivor["id"]


async def test_unmerge_refuses_erased_absorbed_and_survivors_merged_elsewhere(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    top = await create(contacts, {"given_name": "Ali", "emails": ["top@x.io"]})
    await merge(contacts, survivor, other)
    [outer] = (await merge(contacts, top, survivor)).json()["merges"]
    blocked = problem(await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge",
                                          json={"contact_id": other["id"]}), 409)
    assert blocked["blocking_merge_id"] == outer["id"] and outer["id"] in blocked["detail"]
    assert (await contacts.post(f"/v1/contacts/{top['id']}/unmerge", json={"merge_id": outer["id"]})).status_code == 200
    await contacts.post(f"/v1/contacts/{other['id']}/erase", json={"reason": "customer request"})
    erased = problem(await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge",
                                         json={"contact_id": other["id"]}), 409)
    assert "erased" in erased["detail"]
    assert problem(await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge", json={}), 422)
    assert problem(await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge",
                                       json={"merge_id": "nope"}), 404)


async def test_duplicates_find_a_persian_name_written_with_arabic_letters_in_the_same_city(contacts):
    target = await create(contacts, {"given_name": "علی", "family_name": "کریمی", "emails": ["a1@gmail.com"],
                                     "addresses": [{"city": "تهران", "country": "IR"}]})
    twin = await create(contacts, {"given_name": "علي", "family_name": "كريمي", "emails": ["a2@gmail.com"],
                                   "addresses": [{"city": "تهران", "country": "IR"}]})
    await create(contacts, {"given_name": "سارا", "family_name": "احمدی",
                            "addresses": [{"city": "تهران", "country": "IR"}]})
    await create(contacts, {"given_name": "علی", "family_name": "کریمی", "emails": ["a3@gmail.com"],
                            "addresses": [{"city": "شیراز", "country": "IR"}]})  # same name, nothing else shared
    response = await contacts.get(f"/v1/contacts/{target['id']}/duplicates")
    assert response.status_code == 200, response.text
    [found] = response.json()["items"]
    assert found["id"] == twin["id"] and found["display_name"] == "علي كريمي"
    assert [r["code"] for r in found["reasons"]] == ["same_name", "same_city"] and 0 < found["score"] <= 1
    await merge(contacts, target, twin)
    assert (await contacts.get(f"/v1/contacts/{target['id']}/duplicates")).json()["items"] == []
    assert problem(await contacts.get(f"/v1/contacts/{twin['id']}/duplicates"), 409)["merged_into"] == target["id"]
    assert problem(await contacts.get(f"/v1/contacts/{target['id']}/duplicates", params={"limit": 0}), 422)


async def test_undoing_one_of_several_merges_leaves_the_others_in_place(contacts):
    survivor = await create(contacts, ALI)
    first = await create(contacts, ALI_TOO)
    second = await create(contacts, {"given_name": "Ali", "emails": ["z@x.io"], "tags": ["b2b"]})
    await merge(contacts, survivor, first, second)
    response = await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge", json={"contact_id": first["id"]})
    assert response.status_code == 200, response.text
    after = response.json()["survivor"]
    assert after["emails"] == ["ali@example.com", "z@x.io"]
    assert after["tags"] == ["vip", "b2b"]  # the second absorbed contact brought it too
    assert (await contacts.get(f"/v1/contacts/{second['id']}")).status_code == 307
    states = [(m["absorbed_id"], m["unmerged_at"] is None)
              for m in (await contacts.get(f"/v1/contacts/{survivor['id']}/merges")).json()["items"]]
    assert sorted(states) == sorted([(first["id"], False), (second["id"], True)])


async def test_unmerge_is_409_naming_the_contact_that_took_an_identity_since(contacts):
    survivor, other = await create(contacts, ALI), await create(contacts, ALI_TOO)
    await merge(contacts, survivor, other)
    await contacts.patch(f"/v1/contacts/{survivor['id']}", json={"emails": ["ali@example.com"]})
    newcomer = await create(contacts, {"given_name": "Sam", "emails": ["ali.k@work.example"]})
    before = await counts(contacts)
    refused = problem(await contacts.post(f"/v1/contacts/{survivor['id']}/unmerge",
                                          json={"contact_id": other["id"]}), 409)
    assert refused["existing_contact_id"] == newcomer["id"] and "cannot restore" in refused["detail"]
    assert await counts(contacts) == before
    assert (await contacts.get(f"/v1/contacts/{other['id']}")).status_code == 307


async def test_merge_records_paginate_with_a_cursor(contacts):
    survivor = await create(contacts, ALI)
    for i in range(3):
        other = await create(contacts, {"given_name": f"n{i}", "emails": [f"n{i}@x.io"]})
        assert (await merge(contacts, survivor, other)).status_code == 200
    seen, cursor = [], None
    while True:
        page = (await contacts.get(f"/v1/contacts/{survivor['id']}/merges",
                                   params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 3
    assert problem(await contacts.get(f"/v1/contacts/{survivor['id']}/merges", params={"cursor": "bad"}), 422)
