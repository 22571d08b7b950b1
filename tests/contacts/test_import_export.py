"""Import jobs (CSV, JSON Lines, resume after a stop) and the streaming export."""
from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import timedelta

import orjson
from sqlalchemy import func, insert, select, update

from services.common.events import utcnow
from services.common.service_app import cancel_and_wait
from services.contacts import imports
from services.contacts.app import create_app
from services.contacts.models import ContactRow, ImportJobRow
from tests.conftest import audit_entries, running_app, service_settings, staged_events


async def count(client, table) -> int:
    async with client.app.state.ctx.session_factory() as session:
        return (await session.execute(select(func.count()).select_from(table))).scalar()


async def start_import(client, body: bytes, content_type: str = "text/csv", **params) -> dict:
    response = await client.post("/v1/contacts/import", content=body, headers={"Content-Type": content_type},
                                 params=params)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/contacts/imports/{response.json()['id']}"
    return response.json()


async def wait_for(client, job_id: str, timeout: float = 60, **params) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/contacts/imports/{job_id}", params=params)).json()
        if job["status"] in ("completed", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"import {job_id} did not finish: {job}")


async def run_import(client, body: bytes, content_type: str = "text/csv", *, timeout: float = 60, **params) -> dict:
    return await wait_for(client, (await start_import(client, body, content_type, **params))["id"], timeout)


async def find(client, email: str) -> dict:
    response = await client.get("/v1/contacts/lookup", params={"email": email})
    assert response.status_code == 200, email
    return response.json()


PERSIAN_CSV = ("\ufeffgiven_name,family_name,email,phone,tags,city,country,attribute.tier,consent.email,favourite\r\n"
               "علی,کریمی,ali@example.com,۰۹۱۲۱۲۳۴۵۶۷,vip;new,تهران,IR,gold,granted,tea\r\n"
               "Bad,Email,not-an-email,,,,,,,\r\n"
               "Bad,Phone,badphone@example.com,12345,,,,,,\r\n"
               "فاطمه,رضایی,fatemeh@example.com,,,شیراز,IR,,withdrawn,\r\n"
               "\r\n"
               ",Again,ALI@example.com,,returning,,,,,\r\n").encode()  # no given_name: kept


async def test_csv_with_persian_text_bom_and_bad_rows(contacts):
    job = await run_import(contacts, PERSIAN_CSV)
    assert job["status"] == "completed" and job["error"] is None
    assert job["counts"] == {"created": 2, "updated": 1, "unchanged": 0, "failed": 2}
    assert job["progress"]["rows_processed"] == 5 and job["progress"]["percent"] == 100.0
    assert job["warnings"] == ["unknown columns ignored: favourite"]
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(3, "email"), (4, "phone")]
    assert "not-an-email" in job["errors"][0]["reason"] and job["errors_total"] == 2
    ali = await find(contacts, "ali@example.com")
    assert (ali["given_name"], ali["family_name"], ali["phones"]) == ("علی", "Again", ["+989121234567"])
    assert ali["tags"] == ["vip", "new", "returning"] and ali["attributes"] == {"tier": "gold"}
    assert ali["addresses"][0]["city"] == "تهران" and ali["consent"]["email"]["status"] == "granted"
    fatemeh = await find(contacts, "fatemeh@example.com")
    assert fatemeh["consent"]["email"]["status"] == "withdrawn"
    assert await count(contacts, ContactRow.__table__) == 2
    assert (await contacts.get(f"/v1/contacts/imports/{job['id']}", params={"errors_limit": 1})).json()["errors"] == \
        job["errors"][:1]


async def test_jsonl_import_with_line_numbers(contacts):
    lines = [{"given_name": "Zahra", "emails": ["zahra@example.com"], "attributes": {"visits": 3, "vip": True}},
             {"given_name": "Bad", "birth_date": "yesterday"}, "[]",
             {"given_name": "Nima", "external_ids": [{"system": "shop", "id": "n-1"}]}]
    body = b"\n".join(line.encode() if isinstance(line, str) else orjson.dumps(line) for line in lines) + b"\n"
    job = await run_import(contacts, body, "application/x-ndjson")
    assert job["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "failed": 2}
    assert [(e["row"], e["field"]) for e in job["errors"]] == [(2, "birth_date"), (3, "line")]
    assert (await find(contacts, "zahra@example.com"))["attributes"] == {"visits": 3, "vip": True}  # types kept


async def test_twenty_thousand_rows(contacts):
    rows = ["given_name,family_name,email,tags"]
    rows += [f"{'مهسا' if i % 3 else 'Sam'}{i},Test,user{i}@example.com,bulk" for i in range(20_000)]
    rows[500] = "Broken,Row,broken-email,bulk"
    job = await run_import(contacts, "\n".join(rows).encode(), timeout=120)
    assert job["counts"] == {"created": 19_999, "updated": 0, "unchanged": 0, "failed": 1}
    assert job["errors"][0]["row"] == 501
    assert await count(contacts, ContactRow.__table__) == 19_999
    assert len(await staged_events(contacts)) == 19_999
    # One audit entry per committed chunk (500 rows) naming the contacts it created, and the upload's.
    imported = [e for e in await audit_entries(contacts) if e["action"] == "contacts.import"]
    assert len(imported) == 40 and sum(len(e["customer_ids"]) for e in imported) == 19_999


async def test_unsupported_content_type_is_415_and_empty_body_422(contacts):
    response = await contacts.post("/v1/contacts/import", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 415 and response.headers["content-type"] == "application/problem+json"
    response = await contacts.post("/v1/contacts/import", content=b"", headers={"Content-Type": "text/csv"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"
    assert (await contacts.get("/v1/contacts/imports/00000000-0000-4000-8000-000000000000")).status_code == 404
    assert await count(contacts, ImportJobRow.__table__) == 0


async def test_format_query_wins_and_unreadable_header_fails_the_job(contacts):
    job = await run_import(contacts, b"colour,size\nred,L\n", "text/plain", format="csv")
    assert job["status"] == "failed" and "no known column" in job["error"]


async def test_stopped_import_resumes_after_the_last_committed_chunk(contacts, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    real, first_chunk_done = imports._apply_chunk, asyncio.Event()

    async def stall_after_first(*args, **kwargs):
        stored = await real(*args, **kwargs)
        first_chunk_done.set()
        await asyncio.Event().wait()  # "the process stops here"
        return stored

    monkeypatch.setattr(imports, "_apply_chunk", stall_after_first)
    body = "email\n" + "".join(f"r{i}@example.com\n" for i in range(10))
    job_id = (await start_import(contacts, body.encode()))["id"]
    await asyncio.wait_for(first_chunk_done.wait(), 10)
    ctx = contacts.app.state.ctx
    await cancel_and_wait([t for t in ctx.tasks if t.get_name() == f"contacts-import-{job_id}"])  # as shutdown does
    stopped = (await contacts.get(f"/v1/contacts/imports/{job_id}")).json()
    assert stopped["status"] == "running" and stopped["progress"]["rows_processed"] == 3

    monkeypatch.setattr(imports, "_apply_chunk", real)
    assert await imports.resume_unfinished(ctx) == [job_id]
    job = await wait_for(contacts, job_id)
    assert job["counts"]["created"] == 10 and job["progress"]["rows_processed"] == 10
    assert await count(contacts, ContactRow.__table__) == 10
    assert len(await staged_events(contacts)) == 10  # nothing applied twice


HELD = "00000000-0000-4000-8000-00000000be1d"  # a job id, held by a pretended live worker


async def test_crashed_worker_lease_expires_and_a_live_lease_is_respected(contacts):
    ctx = contacts.app.state.ctx
    job_id = (await start_import(contacts, b"email\na@example.com\n"))["id"]
    await wait_for(contacts, job_id)
    now = utcnow()
    async with ctx.session_factory() as session, session.begin():  # pretend a live worker holds a new job
        await session.execute(insert(ImportJobRow.__table__).values(
            id=HELD, status="running", format="csv", file_name="held.csv", file_bytes=10, warnings=[],
            lease_token="other", lease_until=now + timedelta(seconds=30), created_at=now, updated_at=now))
    task = imports.start_processing(ctx, HELD)
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting for the lease, not working on the job
    await cancel_and_wait([task])
    async with ctx.session_factory() as session, session.begin():  # the worker crashed: its lease ran out
        await session.execute(update(ImportJobRow.__table__).where(ImportJobRow.id == HELD)
                              .values(lease_until=now - timedelta(seconds=1)))
    await imports.process_import(ctx, HELD)
    job = (await contacts.get(f"/v1/contacts/imports/{HELD}")).json()
    assert job["status"] == "failed" and "no longer in the import directory" in job["error"]


BATCH = [
    {"given_name": "Ali", "family_name": "Karimi", "emails": ["ali@example.com", "ali2@example.com"],
     "phones": ["09121234567"], "tags": ["vip", "loyal"], "interests": ["tea"], "lifecycle_stage": "customer",
     "source": "web_form", "birth_date": "1990-05-01", "gender": "male", "preferred_language": "fa",
     "addresses": [{"line1": "خیابان ولیعصر", "city": "تهران", "postal_code": "12345", "country": "IR"}],
     "external_ids": [{"system": "shopify", "id": "c-1"}], "attributes": {"tier": "gold"},
     "preferences": {"newsletter": "weekly"}, "social_handles": {"instagram": "@ali"},
     "consent": {"email": {"status": "granted"}, "sms": {"status": "withdrawn"}}},
    {"given_name": "=HYPERLINK(\"x\")", "emails": ["formula@example.com"], "consent": {"email": {"status": "withdrawn"}}},
    {"given_name": "سارا", "phones": ["09350000000"], "attributes": {"city_note": "near, the \"park\""}},
]
COMPARED = ("given_name", "family_name", "display_name", "emails", "phones", "tags", "interests", "lifecycle_stage",
            "source", "birth_date", "gender", "preferred_language", "addresses", "external_ids", "attributes",
            "preferences", "social_handles")


async def test_csv_export_round_trips_through_import(contacts, database_factory):
    created = (await contacts.post("/v1/contacts/batch", json={"items": BATCH})).json()["results"]
    export = await contacts.get("/v1/contacts/export", params={"format": "csv"})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(export.text)))
    assert len(table) == 3 and next(r for r in table if r["emails"] == "formula@example.com")["given_name"][0] == "'"
    originals = {r["id"]: (await contacts.get(f"/v1/contacts/{r['id']}")).json() for r in created}

    again = await run_import(contacts, export.content)  # into the same database: nothing to change
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 3, "failed": 0} and again["warnings"] == []

    async with running_app(create_app(service_settings("contacts", await database_factory.fresh("contacts")))) as fresh:
        job = await run_import(fresh, export.content)
        assert job["counts"]["created"] == 3, job
        for original in originals.values():
            key = {"email": original["emails"][0]} if original["emails"] else {"phone": original["phones"][0]}
            copy = (await fresh.get("/v1/contacts/lookup", params=key)).json()
            assert {f: copy[f] for f in COMPARED} == {f: original[f] for f in COMPARED}
            assert {c: s["status"] for c, s in copy["consent"].items()} == \
                   {c: s["status"] for c, s in original["consent"].items()}


async def test_export_for_a_channel_has_only_granted_consent(contacts):
    await contacts.post("/v1/contacts/batch", json={"items": [
        {"given_name": "yes", "emails": ["yes@example.com"], "consent": {"email": {"status": "granted"}}, "tags": ["t"]},
        {"given_name": "no", "emails": ["no@example.com"], "consent": {"email": {"status": "withdrawn"}}, "tags": ["t"]},
        {"given_name": "silent", "emails": ["silent@example.com"], "tags": ["t"]},
        {"given_name": "sms", "emails": ["sms@example.com"], "consent": {"sms": {"status": "granted"}}, "tags": ["t"]},
        {"given_name": "other-tag", "emails": ["other@example.com"], "consent": {"email": {"status": "granted"}}}]})
    names = lambda text: sorted(row["given_name"] for row in csv.DictReader(io.StringIO(text)))  # noqa: E731
    assert names((await contacts.get("/v1/contacts/export", params={"channel": "email"})).text) == ["other-tag", "yes"]
    assert names((await contacts.get("/v1/contacts/export", params={"channel": "email", "tag": "t"})).text) == ["yes"]
    assert len(names((await contacts.get("/v1/contacts/export")).text)) == 5
    jsonl = (await contacts.get("/v1/contacts/export", params={"channel": "sms", "format": "jsonl"})).text
    assert [orjson.loads(line)["given_name"] for line in jsonl.splitlines()] == ["sms"]
    assert (await contacts.get("/v1/contacts/export", params={"channel": "pigeon"})).status_code == 422


async def test_export_pages_through_more_than_one_page(contacts, monkeypatch):
    from services.contacts import exports

    monkeypatch.setattr(exports, "PAGE_SIZE", 7)
    items = [{"emails": [f"p{i}@example.com"], "attributes": {f"k{i % 3}": "v"}} for i in range(30)]
    await contacts.post("/v1/contacts/batch", json={"items": items})
    export = await contacts.get("/v1/contacts/export", params={"bom": "true"})
    assert export.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert sorted(r["emails"] for r in table) == sorted(f"p{i}@example.com" for i in range(30))
    assert {"attribute.k0", "attribute.k1", "attribute.k2"} <= set(table[0])
    jsonl = (await contacts.get("/v1/contacts/export", params={"format": "jsonl"})).text.splitlines()
    assert len(jsonl) == 30 and len({orjson.loads(line)["id"] for line in jsonl}) == 30
