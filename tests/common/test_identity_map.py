"""The identity map kept from contacts events, on the real database (SQLite or PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import MetaData

from services.common.database import create_engine, create_session_factory
from services.common.identity_map import IdentityOwners, add_identity_table, apply_contact_events, reference_keys

metadata = MetaData()
identities = add_identity_table(metadata)
owners = IdentityOwners(identities)


@pytest.fixture
async def sessions(contacts_db):
    engine = create_engine(contacts_db)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()


def snapshot(contact_id, at, *, emails=(), phones=(), external=(), status="active"):
    return {"id": contact_id, "status": status, "updated_at": f"2026-01-01T00:00:{at:02d}Z", "emails": list(emails),
            "phones": list(phones), "external_ids": [{"system": s, "id": i} for s, i in external]}


async def apply(sessions, *snapshots, restored=None):
    async with sessions() as session, session.begin():
        for contact in snapshots:
            data = {"contact": contact}
            if restored:
                data["restored_contact"] = restored
            await apply_contact_events(session, identities, [{"data": data}])


async def owner(sessions, **ref):
    """The owner of the one key a reference gives."""
    (key,) = reference_keys(**ref)
    async with sessions() as session:
        return (await owners(session, [key, key])).get(key)


async def test_resolves_by_email_phone_and_external_id(sessions):
    await apply(sessions, snapshot("A", 1, emails=["Ali@Example.com"], phones=["+989121234567"],
                                   external=[("shopify", "42"), ("visitor", "v-1")]))
    assert await owner(sessions, email="ali@EXAMPLE.com") == "A"
    assert await owner(sessions, phone="09121234567") == "A"
    assert await owner(sessions, external=[("shopify", "42")]) == "A"
    assert await owner(sessions, external=[("visitor", "v-1")]) == "A"
    assert await owner(sessions, email="other@example.com") is None
    keys = reference_keys(email="ali@example.com", external=[("shopify", "42"), ("shopify", "43")]) * 2
    async with sessions() as session:  # many keys of every kind in one look-up, the unknown left out
        assert await owners(session, keys) == {("email", "", "ali@example.com"): "A", ("external", "shopify", "42"): "A"}


async def test_removed_keys_go_and_older_snapshots_do_not_steal(sessions):
    await apply(sessions, snapshot("A", 1, emails=["x@example.com"]))
    await apply(sessions, snapshot("B", 5, emails=["x@example.com"]))  # B took it over later
    await apply(sessions, snapshot("A", 3, emails=["x@example.com"]))  # A's older state arrives late
    assert await owner(sessions, email="x@example.com") == "B"
    await apply(sessions, snapshot("A", 6, emails=[]))  # A drops it: B keeps it
    assert await owner(sessions, email="x@example.com") == "B"


async def test_merge_unmerge_and_erasure_follow_the_snapshots(sessions):
    await apply(sessions, snapshot("A", 1, emails=["a@example.com"]), snapshot("B", 1, emails=["b@example.com"]))
    await apply(sessions, snapshot("A", 2, emails=["a@example.com", "b@example.com"]))  # B merged into A
    assert await owner(sessions, email="b@example.com") == "A"
    await apply(sessions, snapshot("A", 3, emails=["a@example.com"]),
                restored=snapshot("B", 3, emails=["b@example.com"]))  # unmerged
    assert await owner(sessions, email="b@example.com") == "B"
    await apply(sessions, snapshot("B", 4, status="erased"))
    assert await owner(sessions, email="b@example.com") is None


async def test_a_change_names_the_keys_the_map_gave_the_contact(sessions):
    """What the interactions consumer attaches history by: the keys a snapshot really won, not a
    key a newer snapshot of another contact holds, in one poll or across polls."""
    async with sessions() as session, session.begin():
        changes = await apply_contact_events(session, identities, [
            {"data": {"contact": snapshot("A", 5, emails=["x@example.com"], phones=["+989121234567"])}},
            {"data": {"contact": snapshot("B", 3, emails=["x@example.com", "b@example.com"])}}])
    assert {c.contact_id: sorted(c.owned) for c in changes} == {
        "A": [("email", "", "x@example.com"), ("phone", "", "+989121234567")], "B": [("email", "", "b@example.com")]}
    async with sessions() as session, session.begin():
        [late] = await apply_contact_events(session, identities, [{"data": {"contact": snapshot(
            "B", 4, emails=["x@example.com", "b@example.com"])}}])
    assert late.keys == [("email", "", "x@example.com"), ("email", "", "b@example.com")]
    assert late.owned == [("email", "", "b@example.com")] and await owner(sessions, email="x@example.com") == "A"
