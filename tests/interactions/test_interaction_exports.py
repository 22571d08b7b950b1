"""The interactions export: CSV and JSON Lines with the list's filters, newest first, every
interaction once across pages, metadata as JSON, and each page audited."""
from __future__ import annotations

import csv
import io
import uuid

import orjson

from services.interactions import interaction_exports
from tests.conftest import audit_entries
from tests.interactions.test_interactions_api import at, record


async def test_csv_and_jsonl_with_filters_across_pages(interactions, monkeypatch):
    monkeypatch.setattr(interaction_exports, "PAGE_SIZE", 2)
    customer = str(uuid.uuid4())
    calls = [await record(interactions, customer={"id": customer}, type="call", channel="phone",
                          direction="inbound", occurred_at=at(10 + n), subject=f"تماس {n}", agent="sara",
                          metadata={"queue": "billing"}) for n in range(5)]
    await record(interactions, customer={"id": customer}, type="email", channel="email", direction="outbound",
                 occurred_at=at(1), subject="=cmd|' /C calc'!A0")
    response = await interactions.get("/v1/interactions/export", params={"type": "call"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == [c["id"] for c in calls]  # newest first, each once
    assert rows[0]["subject"] == "تماس 0" and orjson.loads(rows[0]["metadata"]) == {"queue": "billing"}
    assert list(rows[0]) == list(interaction_exports.COLUMNS)
    everything = await interactions.get("/v1/interactions/export", params={"format": "jsonl"})
    lines = [orjson.loads(line) for line in everything.content.splitlines()]
    assert len(lines) == 6 and lines[0]["type"] == "email" and lines[1] == calls[0]
    csv_all = list(csv.DictReader(io.StringIO((await interactions.get("/v1/interactions/export")).text)))
    assert csv_all[0]["subject"].startswith("'=")  # defused for spreadsheets
    entries = [e for e in await audit_entries(interactions) if e["action"] == "interactions.export"]
    assert entries and all(customer in e["customer_ids"] for e in entries)
    bad = await interactions.get("/v1/interactions/export", params={"occurred_after": "yesterday"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
