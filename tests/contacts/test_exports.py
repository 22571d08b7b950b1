"""The contacts export for a channel carries only what consent allows: the customers who granted
it, and of them who they are and that channel's contact point; every page is audited."""
from __future__ import annotations

import csv
import io

import orjson
import pytest

from services.contacts.exports import CONTACT_POINTS
from services.contacts.schemas import CONSENT_CHANNELS
from tests.conftest import audit_entries

PERSON = {"given_name": "مریم", "family_name": "Karimi", "preferred_language": "fa", "emails": ["maryam@example.com"],
          "phones": ["09121234567"], "addresses": [{"line1": "Valiasr 12", "city": "Tehran", "country": "IR"}],
          "birth_date": "1990-01-02", "occupation": "engineer", "attributes": {"tier": "gold"},
          "external_ids": [{"system": "shop", "id": "s-1"}], "tags": ["vip"]}
ELSEWHERE = ("maryam@example.com", "+989121234567", "Valiasr 12", "1990-01-02", "engineer", "gold", "s-1", "vip")


async def people(contacts, channel: str) -> str:
    other = "sms" if channel != "sms" else "email"
    batch = await contacts.post("/v1/contacts/batch", json={"items": [
        {**PERSON, "consent": {channel: {"status": "granted"}}},
        {"given_name": "withdrew", "emails": ["w@example.com"], "phones": ["09121110000"],
         "consent": {channel: {"status": "withdrawn"}, other: {"status": "granted"}}},
        {"given_name": "silent", "emails": ["s@example.com"]}]})
    assert batch.json()["counts"]["created"] == 3, batch.text
    return batch.json()["results"][0]["id"]


@pytest.mark.parametrize("channel", CONSENT_CHANNELS)
async def test_a_channels_csv_has_only_its_contact_point(contacts, channel):
    consenting = await people(contacts, channel)
    response = await contacts.get("/v1/contacts/export", params={"channel": channel})
    [row] = list(csv.DictReader(io.StringIO(response.text)))
    assert row["id"] == consenting and row["given_name"] == "مریم" and row[f"consent.{channel}"] == "granted"
    points = CONTACT_POINTS[channel]
    expected = {"emails": "maryam@example.com", "phones": "+989121234567", "addresses": "Valiasr 12"}
    present = {expected[name] for name in points}
    assert all(value in response.text for value in present)
    assert [value for value in ELSEWHERE if value in response.text and value not in present] == []


@pytest.mark.parametrize("channel", CONSENT_CHANNELS)
async def test_a_channels_json_lines_have_only_its_contact_point(contacts, channel):
    consenting = await people(contacts, channel)
    response = await contacts.get("/v1/contacts/export", params={"channel": channel, "format": "jsonl"})
    [record] = [orjson.loads(line) for line in response.text.splitlines()]
    assert set(record) == {"id", "given_name", "family_name", "display_name", "preferred_language", "consent",
                           *CONTACT_POINTS[channel]}
    assert record["id"] == consenting and list(record["consent"]) == [channel]


async def test_the_whole_export_is_audited_page_by_page(contacts, monkeypatch):
    from services.contacts import exports

    monkeypatch.setattr(exports, "PAGE_SIZE", 2)
    await contacts.post("/v1/contacts/batch", json={"items": [
        {"emails": [f"p{i}@example.com"], "consent": {"email": {"status": "granted" if i % 2 else "withdrawn"}}}
        for i in range(5)]})
    response = await contacts.get("/v1/contacts/export", params={"channel": "email"})
    exported = {row["id"] for row in csv.DictReader(io.StringIO(response.text))}
    entries = [e for e in await audit_entries(contacts) if e["action"] == "contacts.export"]
    assert len(exported) == 2 and {cid for e in entries for cid in e["customer_ids"]} == exported
    assert all(e["detail"] == {"channel": "email", "format": "csv"} for e in entries)
