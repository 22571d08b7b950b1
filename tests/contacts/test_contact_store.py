"""contact_store's look-ups answer the same whichever statement serves them: the one compiled
once per key count (up to FEW_KEYS keys, every single-contact write) or the one built per call
(a batch's hundreds of keys); and so do the suppression list's."""
from __future__ import annotations

from services.contacts import contact_store, suppression


async def test_owners_of_few_and_many_keys_agree(contacts):
    owners = {}
    for i in range(40):
        body = {"given_name": f"c{i}", "emails": [f"c{i}@example.com"], "phones": [f"+98912000{i:04d}"],
                "external_ids": [{"system": "shop", "id": f"x{i}"}]}
        response = await contacts.post("/v1/contacts", json=body)
        assert response.status_code == 201, response.text
        contact_id = response.json()["id"]
        owners.update({("email", "", f"c{i}@example.com"): contact_id, ("phone", "", f"+98912000{i:04d}"): contact_id,
                       ("external", "shop", f"x{i}"): contact_id})
    unknown = [("email", "", "nobody@example.com"), ("external", "other", "x1"), ("phone", "", "+989120009999")]
    keys = sorted(owners)
    ctx = contacts.app.state.ctx
    async with ctx.session_factory() as session:
        few = await contact_store.owners_of(session, keys[:5] + unknown)
        all_of_them = await contact_store.owners_of(session, keys + unknown)  # 123 keys: the per-call statement
        one = await contact_store.owners_of(session, [keys[7], keys[7]])
    assert len(keys) + len(unknown) > contact_store.FEW_KEYS
    assert few == {key: owners[key] for key in keys[:5]}
    assert all_of_them == owners
    assert one == {keys[7]: owners[keys[7]]}


async def test_suppressed_keys_few_and_many_agree(contacts):
    ctx = contacts.app.state.ctx
    secret = ctx.settings.contacts_suppression_secret
    erased = [("email", "", f"gone{i}@example.com") for i in range(70)]
    kept = [("phone", "", f"+98912111{i:04d}") for i in range(10)]
    from services.common.events import utcnow

    async with ctx.session_factory() as session, session.begin():
        await suppression.remember(session, secret, erased, erasure_id="e-1", now=utcnow())
    async with ctx.session_factory() as session:
        assert await suppression.suppressed_keys(session, secret, erased[:3] + kept) == set(erased[:3])
        assert await suppression.suppressed_keys(session, secret, erased + kept) == set(erased)
        assert await suppression.suppressed_keys(session, secret, kept) == set()
