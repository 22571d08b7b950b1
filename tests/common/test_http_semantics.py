"""HTTP semantics every operation keeps: a query parameter it does not take is refused, a cursor
answers only the listing it came from, and a problem's RFC 9457 members are its own."""
from __future__ import annotations

from services.common.errors import Conflict

PROBLEM = "application/problem+json"


async def test_an_unknown_query_parameter_is_refused_not_ignored(contacts):
    await contacts.post("/v1/contacts", json={"given_name": "Sara"})
    response = await contacts.get("/v1/contacts", params={"gender": "female", "limit": 5})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert [error["field"] for error in problem["errors"]] == ["query.gender"]
    assert "unknown query parameter gender" in problem["detail"] and "lifecycle_stage" in problem["detail"]
    assert problem["instance"] == "/v1/contacts"
    assert (await contacts.get("/healthz", params={"verbose": "1"})).status_code == 422
    assert (await contacts.get("/v1/contacts", params={"limit": 5})).status_code == 200


async def test_a_cursor_answers_only_the_filters_and_sort_it_was_given_for(contacts):
    for name in ("Ali", "Sara", "Reza", "Maryam"):
        assert (await contacts.post("/v1/contacts", json={"given_name": name, "tags": ["vip"]})).status_code == 201
    first = (await contacts.get("/v1/contacts", params={"sort": "display_name", "limit": 1})).json()
    cursor = first["next_cursor"]
    for other in ({"sort": "-display_name"}, {"sort": "display_name", "tag": "vip"}):
        reused = await contacts.get("/v1/contacts", params={**other, "limit": 1, "cursor": cursor})
        assert reused.status_code == 422, other
        assert reused.json()["errors"][0]["field"] == "query.cursor"
        assert "other filters or another sort" in reused.json()["detail"]
    # The same listing goes on, with another page size too.
    rest = (await contacts.get("/v1/contacts", params={"sort": "display_name", "limit": 10, "cursor": cursor})).json()
    names = [item["given_name"] for item in first["items"] + rest["items"]]
    assert names == ["Ali", "Maryam", "Reza", "Sara"] and rest["next_cursor"] is None
    garbage = await contacts.get("/v1/contacts", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert garbage.status_code == 422 and "not a cursor this list gave out" in garbage.json()["detail"]


def test_extra_fields_never_replace_the_standard_members():
    problem = Conflict("taken", type="call", status=200, title="x", instance="/elsewhere", field="email").problem()
    assert (problem["type"], problem["status"], problem["title"]) == (
        "https://crm.example/problems/conflict", 409, "Conflict")
    assert "instance" not in problem and problem["field"] == "email"


async def test_a_nul_character_anywhere_is_a_422_not_a_database_error(contacts):
    """PostgreSQL cannot store U+0000; schemathesis found it turned into a 500 there."""
    for response in (await contacts.get("/v1/contacts", params={"tag": "vip\x00"}),
                     await contacts.post("/v1/contacts", content=b'{"given_name": "Ali\\u0000"}',
                                         headers={"content-type": "application/json"})):
        assert response.status_code == 422 and "NUL character" in response.json()["detail"]
    kept = await contacts.post("/v1/contacts", content=b'{"given_name": "back\\\\u0000slash"}',
                               headers={"content-type": "application/json"})
    assert kept.status_code == 201 and kept.json()["given_name"] == "back\\u0000slash"
