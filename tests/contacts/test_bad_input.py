"""Bad input of every kind: a 4xx problem+json naming the field, and nothing written."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services.contacts.models import ContactRow, kernel

PROBLEM = "application/problem+json"


async def nothing_written(client) -> bool:
    async with client.app.state.ctx.session_factory() as session:
        contacts = (await session.execute(select(func.count()).select_from(ContactRow))).scalar()
        events = (await session.execute(select(func.count()).select_from(kernel.outbox))).scalar()
    return contacts == 0 and events == 0


@pytest.mark.parametrize("body, field", [
    ({"given_name": "a", "nickname": "x"}, "nickname"),
    ({"given_name": 12}, "given_name"),
    ({"emails": ["not-an-email"]}, "emails.0"),
    ({"emails": ["ok@example.com", "bad@@example.com"]}, "emails.1"),
    ({"phones": ["12"]}, "phones.0"),
    ({"phones": ["call me maybe"]}, "phones.0"),
    ({"addresses": [{"city": "Tehran", "country": "XX"}]}, "addresses.0.country"),
    ({"consent": {"pigeon": {"status": "granted"}}}, "consent.pigeon"),
    ({"consent": {"email": {"status": "maybe"}}}, "consent.email.status"),
    ({"consent": {"email": {"status": "granted", "at": "2026-01-01T10:00:00"}}}, "consent.email.at"),
    ({"lifecycle_stage": "whale"}, "lifecycle_stage"),
    ({"birth_date": "31/12/1990"}, "birth_date"),
    ({"attributes": {"bad key": 1}}, "attributes.bad key"),
    ({"emails": "a@example.com"}, "emails"),
])
async def test_invalid_contact_is_422_naming_the_field(contacts, body, field):
    response = await contacts.post("/v1/contacts", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert any(error["field"].startswith(field) for error in problem["errors"]), problem
    assert await nothing_written(contacts)


async def test_malformed_json_is_400(contacts):
    response = await contacts.post("/v1/contacts", content=b'{"given_name": "a",', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert "malformed JSON" in response.json()["detail"]
    assert await nothing_written(contacts)


async def test_oversized_body_is_413_before_parsing(contacts):
    limit = contacts.app.state.ctx.settings.max_body_bytes
    body = b'{"given_name": "' + b"x" * (limit + 10) + b'"}'
    response = await contacts.post("/v1/contacts", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert await nothing_written(contacts)


async def test_oversized_chunked_body_without_length_is_413(contacts):
    limit = contacts.app.state.ctx.settings.max_body_bytes

    async def chunks():
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    response = await contacts.post("/v1/contacts", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize("params, field", [
    ({"cursor": "not-a-cursor"}, "query.cursor"),
    ({"cursor": "WzFd"}, "query.cursor"),  # valid base64 JSON, wrong shape
    ({"sort": "shoe_size"}, "query.sort"),
    ({"limit": 0}, "query.limit"),
    ({"consent": "pigeon"}, "query.consent"),
    ({"created_after": "yesterday"}, "query.created_after"),
    ({"country": "Iran"}, "query.country"),
])
async def test_bad_list_query_is_4xx_naming_the_parameter(contacts, params, field):
    response = await contacts.get("/v1/contacts", params=params)
    assert response.status_code in (400, 422)
    assert response.headers["content-type"] == PROBLEM
    assert any(error["field"] == field for error in response.json()["errors"]), response.json()


async def test_unknown_path_and_method_are_problem_json(contacts):
    missing = await contacts.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    wrong = await contacts.put("/v1/contacts")
    assert wrong.status_code == 405 and wrong.headers["content-type"] == PROBLEM


async def test_unknown_contact_is_404_and_any_if_match_that_does_not_match_is_412(contacts):
    assert (await contacts.get("/v1/contacts/00000000-0000-0000-0000-000000000000")).status_code == 404
    created = (await contacts.post("/v1/contacts", json={"given_name": "a"})).json()
    path = f"/v1/contacts/{created['id']}"
    for stale in ('"stale-0"', '"7"', 'W/"2", "x"'):  # RFC 9110: any tag that does not match
        response = await contacts.patch(path, json={"given_name": "b"}, headers={"If-Match": stale})
        assert response.status_code == 412, (stale, response.text)
        assert response.json()["type"].endswith("/precondition-failed") and response.json()["instance"] == path
    malformed = await contacts.patch(path, json={"given_name": "b"}, headers={"If-Match": "yesterday"})
    assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "header.if-match"
    assert (await contacts.get(path)).json()["given_name"] == "a"
    either = await contacts.patch(path, json={"given_name": "b"}, headers={"If-Match": '"0", "1"'})
    assert either.status_code == 200 and either.headers["etag"] == '"2"'


async def test_idempotency_key_replays_and_refuses_another_body(contacts):
    headers = {"Idempotency-Key": "create-ali-1"}
    first = await contacts.post("/v1/contacts", json={"given_name": "Ali"}, headers=headers)
    again = await contacts.post("/v1/contacts", json={"given_name": "Ali"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = await contacts.post("/v1/contacts", json={"given_name": "Reza"}, headers=headers)
    assert other.status_code == 422 and other.headers["content-type"] == PROBLEM
    async with contacts.app.state.ctx.session_factory() as session:
        assert (await session.execute(select(func.count()).select_from(ContactRow))).scalar() == 1
        # One contact event and its audit entry.
        assert (await session.execute(select(func.count()).select_from(kernel.outbox))).scalar() == 2
