"""Unit tests of the pure merge, unmerge and duplicate-scoring rules: no database, no HTTP."""
from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from services.common.errors import Conflict, InvalidInput
from services.contacts import duplicates, merge_plan
from services.contacts.schemas import ConsentState, ContactPublic

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
EARLY, LATE = NOW - timedelta(days=30), NOW - timedelta(days=1)


def contact(**fields) -> ContactPublic:
    given, family = fields.get("given_name"), fields.get("family_name")
    fields.setdefault("display_name", " ".join(p for p in (given, family) if p) or None)
    return ContactPublic(id=str(uuid.uuid4()), version=fields.pop("version", 1), created_at=EARLY,
                         updated_at=EARLY, **fields)


def consent(status: str, at: datetime, source: str = "form") -> dict:
    return {"status": status, "source": source, "at": at}


def test_identities_union_with_the_survivors_first_and_emails_case_insensitive():
    survivor = contact(emails=["a@x.com"], phones=["+989121111111"], external_ids=[{"system": "shop", "id": "1"}])
    absorbed = contact(emails=["b@x.com"], phones=["+989122222222"],
                       external_ids=[{"system": "shop", "id": "2"}, {"system": "crm", "id": "9"}])
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    assert plan.contact.emails == ["a@x.com", "b@x.com"]
    assert plan.contact.phones == ["+989121111111", "+989122222222"]
    assert [(e.system, e.id) for e in plan.contact.external_ids] == [("shop", "1"), ("shop", "2"), ("crm", "9")]
    taken = plan.steps[0].contributions
    assert taken["emails"] == ["b@x.com"] and taken["phones"] == ["+989122222222"]
    assert taken["external_ids"] == [{"system": "shop", "id": "2"}, {"system": "crm", "id": "9"}]
    same = merge_plan.fold({**survivor.model_dump(mode="json")}, {**absorbed.model_dump(mode="json"),
                                                                 "emails": ["A@X.com"]})[1]
    assert same["emails"] == []


def test_consent_most_recent_wins_either_way_and_a_tie_keeps_the_survivors():
    survivor = contact(consent={"email": consent("granted", EARLY), "sms": consent("granted", LATE),
                                "phone": consent("granted", EARLY, "shop")})
    absorbed = contact(consent={"email": consent("withdrawn", LATE), "sms": consent("withdrawn", EARLY),
                                "phone": consent("granted", EARLY, "call"), "whatsapp": consent("granted", EARLY)})
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    result = plan.contact.consent
    assert result["email"].status == "withdrawn" and result["sms"].status == "granted"
    assert result["phone"].source == "shop" and result["whatsapp"].status == "granted"
    taken = plan.steps[0].contributions["consent"]
    assert set(taken) == {"email", "whatsapp"}
    assert taken["email"]["replaced"]["status"] == "granted" and taken["whatsapp"]["replaced"] is None
    conflicts = {c["field"]: c for c in plan.conflicts}
    assert conflicts["consent.email"]["kept"]["status"] == "withdrawn"
    assert conflicts["consent.sms"]["kept"]["status"] == "granted"
    assert "consent.phone" not in conflicts  # same status: nothing to decide


def test_tags_interests_union_and_maps_keep_the_survivors_value_on_conflict():
    survivor = contact(tags=["vip"], interests=["tea"], attributes={"tier": "gold", "visits": 3},
                       preferences={"newsletter": True}, social_handles={"instagram": "ali"})
    absorbed = contact(tags=["vip", "b2b"], interests=["coffee"], attributes={"tier": "silver", "score": 7},
                       preferences={"newsletter": False, "lang": "fa"},
                       social_handles={"instagram": "ali_k", "telegram": "alik"})
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    c = plan.contact
    assert c.tags == ["vip", "b2b"] and c.interests == ["tea", "coffee"]
    assert c.attributes == {"tier": "gold", "visits": 3, "score": 7}
    assert c.preferences == {"newsletter": True, "lang": "fa"}
    assert c.social_handles == {"instagram": "ali", "telegram": "alik"}
    taken = plan.steps[0].contributions
    assert taken["tags"] == ["b2b"] and taken["attributes"] == {"score": 7}
    assert {c["field"] for c in plan.conflicts} == {"attributes.tier", "preferences.newsletter",
                                                    "social_handles.instagram"}
    tier = next(c for c in plan.conflicts if c["field"] == "attributes.tier")
    assert (tier["survivor_value"], tier["absorbed_value"], tier["kept"]) == ("gold", "silver", "gold")
    assert tier["absorbed_contact_id"] == absorbed.id


def test_scalars_keep_the_survivors_and_fill_its_empty_ones():
    survivor = contact(given_name="Ali", occupation="engineer")
    absorbed = contact(given_name="Aly", family_name="Karimi", occupation="teacher",
                       birth_date=date(1990, 5, 17), gender="male")
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    c = plan.contact
    assert (c.given_name, c.family_name, c.occupation, c.birth_date) == ("Ali", "Karimi", "engineer", date(1990, 5, 17))
    assert c.display_name == "Ali Karimi"  # derived from the names, so it follows them
    assert plan.steps[0].contributions["fields"] == {"family_name": "Karimi", "birth_date": "1990-05-17",
                                                     "gender": "male"}
    assert {c["field"] for c in plan.conflicts} == {"given_name", "occupation"}
    assert {"family_name", "birth_date", "display_name"} <= set(plan.changed_fields)


def test_an_explicit_display_name_is_kept_and_conflicts_are_reported():
    survivor = contact(given_name="Ali", display_name="Dr. Ali")
    absorbed = contact(given_name="Ali", display_name="Ali K.")
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    assert plan.contact.display_name == "Dr. Ali"
    assert [c["field"] for c in plan.conflicts] == ["display_name"]


def test_addresses_union_without_equal_ones_regardless_of_letter_forms_and_digits():
    survivor = contact(addresses=[{"city": "تهران", "line1": "خیابان ولیعصر ۱۲", "country": "IR"}])
    absorbed = contact(addresses=[{"city": "تهران", "line1": "خيابان وليعصر 12", "country": "IR", "label": "home"},
                                  {"city": "شیراز", "country": "IR"}])
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    assert [a.city for a in plan.contact.addresses] == ["تهران", "شیراز"]
    assert [a["city"] for a in plan.steps[0].contributions["addresses"]] == ["شیراز"]


@pytest.mark.parametrize("stages, expected", [
    (["lead", "customer"], "customer"), (["customer", "prospect"], "customer"),
    (["prospect", "lead", "customer"], "customer"), (["churned", "lead"], "lead"),
    (["customer", "churned"], "customer"), (["churned", "churned", "churned"], "churned"),
])
def test_lifecycle_stage_most_advanced_and_churned_only_if_all_are(stages, expected):
    survivor, *absorbed = [contact(lifecycle_stage=stage) for stage in stages]
    assert merge_plan.plan_merge(survivor, absorbed, now=NOW).contact.lifecycle_stage == expected


def test_tombstones_keep_their_data_and_redirect_and_the_survivor_gets_one_new_version():
    survivor = contact(given_name="Ali", version=4)
    absorbed = contact(given_name="Sara", emails=["s@x.com"], version=2)
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    [dead] = plan.tombstones
    assert (dead.status, dead.merged_into, dead.version, dead.emails) == ("merged", survivor.id, 3, ["s@x.com"])
    assert plan.contact.version == 5 and plan.contact.updated_at == NOW and plan.contact.status == "active"
    assert plan.steps[0].absorbed_before == absorbed.model_dump(mode="json")
    assert plan.steps[0].survivor_before == survivor.model_dump(mode="json")


def test_several_contacts_fold_in_order_each_with_its_own_contributions():
    survivor = contact(given_name="Ali", tags=["a"], consent={"email": consent("granted", EARLY)})
    first = contact(family_name="Karimi", tags=["b"], consent={"email": consent("withdrawn", LATE - timedelta(days=5))})
    second = contact(family_name="Karimy", tags=["b", "c"], consent={"email": consent("granted", LATE)})
    plan = merge_plan.plan_merge(survivor, [first, second], now=NOW)
    assert plan.contact.family_name == "Karimi" and plan.contact.tags == ["a", "b", "c"]
    assert plan.contact.consent["email"].at == LATE
    one, two = (step.contributions for step in plan.steps)
    assert one["tags"] == ["b"] and two["tags"] == ["c"] and two["fields"] == {}
    assert two["consent"]["email"]["replaced"]["status"] == "withdrawn"
    assert plan.steps[1].survivor_before["family_name"] == "Karimi"
    assert any(c["field"] == "family_name" and c["absorbed_contact_id"] == second.id for c in plan.conflicts)


def test_requested_ids_refuse_self_merge_and_empty_and_drop_repeats():
    with pytest.raises(InvalidInput) as self_merge:
        merge_plan.requested_ids("s", ["a", "s"])
    assert self_merge.value.errors[0]["field"] == "contact_ids.1"
    with pytest.raises(InvalidInput):
        merge_plan.requested_ids("s", [])
    with pytest.raises(InvalidInput):
        merge_plan.requested_ids("s", [str(i) for i in range(51)])
    assert merge_plan.requested_ids("s", ["b", "a", "b"]) == ["b", "a"]


def test_only_active_contacts_merge():
    survivor = contact(given_name="Ali")
    gone = contact(given_name="Sara").model_copy(update={"status": "erased"})
    moved = contact(given_name="Reza").model_copy(update={"status": "merged", "merged_into": "elsewhere"})
    for other in (gone, moved):
        with pytest.raises(Conflict):
            merge_plan.plan_merge(survivor, [other], now=NOW)
    with pytest.raises(Conflict) as survivor_moved:
        merge_plan.plan_merge(moved, [survivor], now=NOW)
    assert survivor_moved.value.extra["merged_into"] == "elsewhere"


def _merge_then_unmerge(survivor, absorbed, *, edit=None, others=()):
    plan = merge_plan.plan_merge(survivor, [absorbed], now=NOW)
    merged = plan.contact if edit is None else plan.contact.model_copy(update=edit)
    step = plan.steps[0]
    return merge_plan.plan_unmerge(merged, plan.tombstones[0], absorbed_before=step.absorbed_before,
                                   contributions=step.contributions, others=others, now=NOW + timedelta(hours=1))


def test_unmerge_gives_back_exactly_what_came_and_restores_the_absorbed_contact():
    survivor = contact(given_name="Ali", emails=["a@x.com"], tags=["vip"], attributes={"tier": "gold"},
                       consent={"email": consent("granted", EARLY)}, lifecycle_stage="lead")
    absorbed = contact(given_name="Ali", family_name="Karimi", emails=["b@x.com"], tags=["b2b"],
                       attributes={"tier": "silver", "score": 1}, consent={"email": consent("withdrawn", LATE)},
                       lifecycle_stage="customer", addresses=[{"city": "Tehran", "country": "IR"}], version=3)
    undone = _merge_then_unmerge(survivor, absorbed)
    before, after = survivor.model_dump(mode="json"), undone.survivor.model_dump(mode="json")
    for name in ("version", "updated_at"):
        before.pop(name), after.pop(name)
    assert after == before
    assert undone.survivor.version == 3  # one for the merge, one for the unmerge
    assert undone.restored.model_dump(exclude={"version", "updated_at"}) == absorbed.model_dump(
        exclude={"version", "updated_at"})
    assert undone.restored.version == 5 and undone.restored.status == "active"  # tombstone 4 + 1
    assert undone.reverted_consent["email"]["status"] == "granted"


def test_unmerge_keeps_what_changed_since_the_merge():
    survivor = contact(given_name="Ali", consent={"email": consent("granted", EARLY)})
    absorbed = contact(family_name="Karimi", attributes={"score": 1}, tags=["b2b"],
                       consent={"email": consent("withdrawn", LATE)})
    newer = ConsentState(status="granted", source="support", at=NOW)
    undone = _merge_then_unmerge(survivor, absorbed, edit={
        "family_name": "Karimi-Rad", "attributes": {"score": 2}, "consent": {"email": newer}})
    assert undone.survivor.family_name == "Karimi-Rad"
    assert undone.survivor.attributes == {"score": 2}
    assert undone.survivor.consent["email"].source == "support"
    assert undone.survivor.tags == []  # the tag was unchanged, so it goes back
    assert undone.reverted_consent == {}


def test_unmerge_keeps_what_another_still_merged_contact_also_brought():
    survivor = contact(given_name="Ali")
    absorbed = contact(given_name="Ali", tags=["vip"], attributes={"tier": "gold"})
    other = contact(given_name="Ali", tags=["vip"], attributes={"tier": "gold"}).model_dump(mode="json")
    undone = _merge_then_unmerge(survivor, absorbed, others=[other])
    assert undone.survivor.tags == ["vip"] and undone.survivor.attributes == {"tier": "gold"}


def test_duplicate_names_match_across_arabic_and_persian_letter_forms_word_order_and_zwnj():
    key = lambda text: tuple(duplicates.search_key(text).split())  # noqa: E731
    assert duplicates.name_similarity(key("علي كريمي"), key("علی کریمی")) == 1.0
    assert duplicates.name_similarity(key("کریمی علی"), key("علی کریمی")) == 1.0
    assert duplicates.name_similarity(key("علی‌رضا کریمی"), key("علی رضا کریمی")) == 1.0
    assert duplicates.name_similarity(key("Ali Karimi"), key("Ali Karimy")) >= duplicates.MIN_NAME_SIMILARITY
    assert duplicates.name_similarity(key("علی کریمی"), key("سارا احمدی")) < duplicates.MIN_NAME_SIMILARITY


def test_a_duplicate_needs_a_similar_name_and_a_shared_attribute():
    target = duplicates.match_profile(contact(given_name="علي", family_name="كريمي", emails=["ali@gmail.com"],
                                              addresses=[{"city": "تهران", "country": "IR"}]))
    same_city = duplicates.match_profile(contact(given_name="علی", family_name="کریمی",
                                                 addresses=[{"city": "تهران", "country": "IR"}]))
    free_mail_only = duplicates.match_profile(contact(given_name="علی", family_name="کریمی",
                                                      emails=["other@gmail.com"]))
    other_name = duplicates.match_profile(contact(given_name="سارا", family_name="احمدی",
                                                  addresses=[{"city": "تهران", "country": "IR"}]))
    found = duplicates.score_candidate(target, same_city)
    assert found is not None and [r.code for r in found.reasons] == ["same_name", "same_city"]
    assert found.score == pytest.approx(0.6 + 0.4 * 0.25)
    assert duplicates.score_candidate(target, free_mail_only) is None  # gmail.com is shared by everyone
    assert duplicates.score_candidate(target, other_name) is None
