"""POST /v1/contacts/batch: create-or-update by email, phone or external id, per-item answers,
no duplicates under concurrency, idempotent retries."""
from __future__ import annotations

import asyncio

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from services.contacts import contact_store, upsert
from services.contacts.app import create_app
from services.contacts.models import ConsentEventRow, ContactRow, IdentityRow, kernel
from tests.conftest import running_app, service_settings


async def scalar(client, statement):
    async with client.app.state.ctx.session_factory() as session:
        return (await session.execute(statement)).scalar()


async def count(client, table) -> int:
    return await scalar(client, select(func.count()).select_from(table))


async def outbox(client) -> list[tuple[str, dict]]:
    async with client.app.state.ctx.session_factory() as session:
        rows = (await session.execute(select(kernel.outbox.c.type, kernel.outbox.c.payload)
                                      .where(kernel.outbox.c.topic == client.app.state.ctx.topic)
                                      .order_by(kernel.outbox.c.position))).all()
    return [(row.type, orjson.loads(row.payload)) for row in rows]


async def batch(client, *items, **kwargs):
    response = await client.post("/v1/contacts/batch", json={"items": list(items)}, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def test_mixed_items_store_the_good_and_name_the_bad_fields(contacts):
    body = await batch(contacts,
                       {"given_name": "مریم", "emails": ["maryam@example.com"]},
                       {"given_name": "x", "emails": ["not-an-email"]},
                       {"given_name": "y", "phones": ["12"]},
                       {"given_name": "z", "lifecycle_stage": "vip", "nickname": "zz"},
                       "not an object",
                       {"family_name": "Rahimi", "phones": ["09121112233"], "external_ids": [{"system": "pos", "id": "7"}]})
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [(0, "created"), (1, "error"), (2, "error"), (3, "error"), (4, "error"), (5, "created")]
    assert body["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "error": 4}
    errors = {r["index"]: r["error"] for r in body["results"] if r["error"]}
    assert errors[1]["status"] == 422 and errors[1]["errors"][0]["field"] == "emails.0"
    assert errors[2]["errors"][0]["field"] == "phones.0"
    assert {e["field"] for e in errors[3]["errors"]} == {"lifecycle_stage", "nickname"}
    assert errors[4]["errors"][0]["field"] == "item"
    assert await count(contacts, ContactRow.__table__) == 2
    stored = (await contacts.get(f"/v1/contacts/{body['results'][5]['id']}")).json()
    assert stored["phones"] == ["+989121112233"] and stored["version"] == 1
    assert [t for t, _ in await outbox(contacts)] == ["crm.contact.created.v1"] * 2


async def test_more_than_1000_items_is_422_naming_items_and_writes_nothing(contacts):
    items = [{"emails": [f"u{i}@example.com"]} for i in range(1001)]
    response = await contacts.post("/v1/contacts/batch", json={"items": items})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "items"
    assert (await contacts.post("/v1/contacts/batch", json={"items": []})).status_code == 422
    assert await count(contacts, ContactRow.__table__) == 0
    assert await count(contacts, kernel.outbox) == 0


async def test_same_email_twice_in_one_batch_is_one_contact(contacts):
    body = await batch(contacts, {"given_name": "Ali", "emails": ["ali@example.com"]},
                       {"family_name": "Karimi", "emails": ["ALI@Example.com"], "tags": ["vip"]})
    assert [r["status"] for r in body["results"]] == ["created", "updated"]
    assert body["results"][0]["id"] == body["results"][1]["id"]
    contact = (await contacts.get(f"/v1/contacts/{body['results'][0]['id']}")).json()
    assert (contact["given_name"], contact["family_name"], contact["tags"], contact["version"]) == ("Ali", "Karimi", ["vip"], 2)
    assert await count(contacts, ContactRow.__table__) == 1
    assert [(t, e["sequence"]) for t, e in await outbox(contacts)] == [("crm.contact.created.v1", 1),
                                                                        ("crm.contact.updated.v1", 2)]


async def test_update_adds_lists_merges_maps_replaces_scalars(contacts):
    first = {"given_name": "Sara", "emails": ["sara@example.com"], "phones": ["09120000001"], "tags": ["a"],
             "attributes": {"tier": "gold", "visits": 1}, "lifecycle_stage": "lead",
             "consent": {"email": {"status": "granted", "source": "form"}}}
    created = (await batch(contacts, first))["results"][0]
    second = {"phones": ["+98 912 000 0001"], "emails": ["sara.work@example.com"], "tags": ["b", "a"],
              "attributes": {"visits": 2}, "lifecycle_stage": "customer", "given_name": None,
              "consent": {"email": {"status": "granted"}, "sms": {"status": "withdrawn"}}}
    result = (await batch(contacts, second))["results"][0]
    assert (result["status"], result["id"], result["version"]) == ("updated", created["id"], 2)
    contact = (await contacts.get(f"/v1/contacts/{created['id']}")).json()
    assert contact["emails"] == ["sara@example.com", "sara.work@example.com"]  # first stays primary
    assert contact["phones"] == ["+989120000001"] and contact["tags"] == ["a", "b"]
    assert contact["attributes"] == {"tier": "gold", "visits": 2}
    assert contact["given_name"] == "Sara" and contact["lifecycle_stage"] == "customer"
    assert contact["consent"]["email"]["source"] == "form"  # restating granted changes nothing
    assert contact["consent"]["sms"]["status"] == "withdrawn"
    updated = (await outbox(contacts))[-1][1]
    assert updated["data"]["changed_fields"] == ["attributes", "consent", "emails", "lifecycle_stage", "tags"]
    history = await scalar(contacts, select(func.count()).select_from(ConsentEventRow.__table__))
    assert history == 2  # email granted (create), sms withdrawn (update)
    again = (await batch(contacts, second))["results"][0]
    assert (again["status"], again["version"]) == ("unchanged", 2)
    assert len(await outbox(contacts)) == 2


async def test_identities_of_two_contacts_is_a_per_item_conflict_naming_both(contacts):
    a = (await batch(contacts, {"emails": ["a@example.com"]}))["results"][0]["id"]
    b = (await batch(contacts, {"phones": ["09121234567"]}))["results"][0]["id"]
    body = await batch(contacts, {"emails": ["a@example.com"], "phones": ["09121234567"]},
                       {"emails": ["c@example.com"]})
    error = body["results"][0]["error"]
    assert body["results"][0]["status"] == "error" and error["status"] == 409
    assert sorted(error["contact_ids"]) == sorted([a, b]) and a in error["detail"] and b in error["detail"]
    assert body["results"][1]["status"] == "created"


async def test_an_item_that_loses_the_race_is_rerun_as_an_update(contacts, monkeypatch):
    """The owners were read before another writer committed the same email: the unique index
    refuses the insert and the item is applied again, now as an update of the winner."""
    winner = (await batch(contacts, {"given_name": "first", "emails": ["race@example.com"]}))["results"][0]
    real, calls = contact_store.owners_of, []

    async def stale_first_read(session, keys):
        calls.append(keys)
        return {} if len(calls) == 1 else await real(session, keys)

    monkeypatch.setattr(contact_store, "owners_of", stale_first_read)
    body = await batch(contacts, {"family_name": "second", "emails": ["race@example.com"]}, {"emails": ["new@example.com"]})
    assert len(calls) >= 2
    assert [(r["status"], r["id"]) for r in body["results"]][0] == ("updated", winner["id"])
    assert body["results"][1]["status"] == "created"
    assert await count(contacts, ContactRow.__table__) == 2


async def test_concurrent_upserts_of_one_new_email_make_one_contact(contacts):
    for round_ in range(5):
        email = f"same{round_}@example.com"
        bodies = await asyncio.gather(*[batch(contacts, {"given_name": f"c{n}", "emails": [email]}) for n in range(2)])
        results = sorted(b["results"][0]["status"] for b in bodies)
        assert results in (["created", "updated"], ["created", "unchanged"]), results
        assert len({b["results"][0]["id"] for b in bodies}) == 1
    assert await count(contacts, ContactRow.__table__) == 5
    assert await count(contacts, IdentityRow.__table__) == 5


async def test_two_app_instances_on_one_database_make_one_contact(contacts_db):
    settings = service_settings("contacts", contacts_db)
    async with running_app(create_app(settings)) as one, running_app(create_app(settings)) as two:
        for round_ in range(5):
            items = [{"emails": [f"shared{round_}-{i}@example.com"], "tags": [f"t{i}"]} for i in range(20)]
            first, second = await asyncio.gather(batch(one, *items), batch(two, *reversed(items)))
            assert first["counts"]["error"] == second["counts"]["error"] == 0
            assert first["counts"]["created"] + second["counts"]["created"] == 20
        assert await count(one, ContactRow.__table__) == 100
        assert await count(two, IdentityRow.__table__) == 100


async def test_idempotent_retry_answers_the_same_and_adds_no_events(contacts):
    payload = {"items": [{"given_name": "Reza", "emails": ["reza@example.com"]}]}
    headers = {"Idempotency-Key": "batch-1"}
    first = await contacts.post("/v1/contacts/batch", json=payload, headers=headers)
    events = len(await outbox(contacts))
    retry = await contacts.post("/v1/contacts/batch", content=orjson.dumps(payload, option=orjson.OPT_INDENT_2),
                                headers={**headers, "Content-Type": "application/json"})
    assert retry.status_code == 200 and retry.json() == first.json()
    assert retry.headers.get("idempotent-replayed") == "true"
    assert len(await outbox(contacts)) == events == 1
    other = await contacts.post("/v1/contacts/batch", json={"items": [{"emails": ["x@example.com"]}]}, headers=headers)
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")
    assert await count(contacts, ContactRow.__table__) == 1


async def test_deadlock_retries_the_whole_transaction(contacts, monkeypatch):
    class Deadlock(Exception):
        sqlstate = "40P01"

    real, calls = upsert.apply_in_session, []

    async def deadlock_once(session, ctx, items, now):
        calls.append(1)
        if len(calls) == 1:
            await real(session, ctx, items, now)  # written, then rolled back with the transaction
            raise DBAPIError("INSERT ...", {}, Deadlock())
        return await real(session, ctx, items, now)

    monkeypatch.setattr(upsert, "apply_in_session", deadlock_once)
    body = await batch(contacts, {"emails": ["dl@example.com"]})
    assert len(calls) == 2 and body["results"][0]["status"] == "created"
    assert await count(contacts, ContactRow.__table__) == 1 and len(await outbox(contacts)) == 1

