"""Every event the contacts service stages matches its published JSON Schema."""
from __future__ import annotations

import jsonschema
import orjson
from sqlalchemy import select

from services.common.event_catalog import envelope_schema
from services.contacts.event_schemas import CONTACT_EVENTS
from services.contacts.models import kernel

SCHEMAS = {event.type: envelope_schema(event) for event in CONTACT_EVENTS}


async def staged_events(client) -> list[dict]:
    async with client.app.state.ctx.session_factory() as session:
        rows = (await session.execute(select(kernel.outbox.c.payload).where(kernel.outbox.c.topic == "crm.contacts.v1")
                                      .order_by(kernel.outbox.c.position))).all()
    return [orjson.loads(payload) for (payload,) in rows]


async def test_every_staged_event_validates_and_sequences_increase(contacts):
    a = (await contacts.post("/v1/contacts", json={"given_name": "زهرا", "emails": ["z@example.com"],
                                                   "consent": {"email": {"status": "granted"}}})).json()
    b = (await contacts.post("/v1/contacts", json={"given_name": "Zahra", "phones": ["+989121110000"]})).json()
    await contacts.patch(f"/v1/contacts/{a['id']}", json={"tags": ["vip"]})
    await contacts.put(f"/v1/contacts/{a['id']}/consent/sms", json={"status": "granted", "source": "pos"})
    merge = await contacts.post(f"/v1/contacts/{a['id']}/merge", json={"contact_ids": [b["id"]]})
    assert merge.status_code == 200, merge.text
    unmerge = await contacts.post(f"/v1/contacts/{a['id']}/unmerge", json={"contact_id": b["id"]})
    assert unmerge.status_code == 200, unmerge.text
    await contacts.post(f"/v1/contacts/{a['id']}/erase", json={"reason": "asked"})

    events = await staged_events(contacts)
    kinds = [event["type"].split(".")[2] for event in events]
    assert kinds == ["created", "created", "updated", "consent_changed", "merged", "unmerged", "erased"]
    for event in events:
        jsonschema.validate(event, SCHEMAS[event["type"]], format_checker=jsonschema.FormatChecker())
    sequences = [event["sequence"] for event in events if event["subject"] == a["id"]]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


async def test_schema_rejects_a_wrong_event():
    schema = SCHEMAS["crm.contact.updated.v1"]
    bad = {"specversion": "1.0", "id": "x", "source": "/crm/orders", "type": "crm.contact.updated.v1",
           "subject": "s", "time": "now", "datacontenttype": "application/json", "sequence": 0, "data": {}}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert {tuple(e.path)[:1] for e in errors} >= {("source",), ("sequence",), ("data",)}


async def test_asyncapi_document_lists_every_event(contacts):
    document = (await contacts.get("/asyncapi.json")).json()
    assert document["asyncapi"].startswith("3.")
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == set(SCHEMAS)
    assert document["channels"]["crm_contacts_v1"]["address"] == "crm.contacts.v1"
