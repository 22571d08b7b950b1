"""Likely duplicates of a contact: a similar normalized name plus at least one shared attribute.

Two steps, so a big base is never read into Python:
1. SQL narrows the candidates (each query bounded by CANDIDATE_CAP rows, active contacts only):
   - `sort_name` (the normalized display name) starting with the contact's first name token and
     the initial of the next one, or the other way round ("Karimi A..." for "Ali Karimi"), or the
     first two tokens written together ("علیرضا" for "علی رضا");
   - contacts in the same city (the facet index) whose search text holds the family name;
   - contacts with an email of the same local part at another domain (the identity index).
2. Python scores each candidate. Names are compared after search_key (Arabic/Persian letter
   forms, diacritics, ZWNJ, digits, case) with spaces removed, in the given order and with the
   words sorted; the similarity is difflib's ratio and must reach MIN_NAME_SIMILARITY (0.8: one
   or two letters off in a full name). A similar name alone is not enough: the candidate must also
   share one attribute (birth date, email local part, social handle, street line, postal code,
   email domain other than free-mail providers, or city). Phones are not compared: one number
   can belong to one contact only, so an equal phone can never occur between two contacts.

score = 0.6 * name similarity + 0.4 * min(1, sum of the shared attributes' weights).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from difflib import SequenceMatcher

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.errors import Conflict, NotFound
from services.common.service_app import ServiceContext
from services.common.text_normalization import search_key

from . import contact_store
from .contact_record import compact_key
from .merge_schemas import DuplicateCandidate, DuplicateList, DuplicateReason
from .models import ContactRow, FacetRow, IdentityRow
from .schemas import ContactPublic

CANDIDATE_CAP = 200
MIN_NAME_SIMILARITY = 0.8
NAME_WEIGHT, ATTRIBUTE_WEIGHT = 0.6, 0.4
WEIGHTS = {"same_birth_date": 0.6, "same_email_local_part": 0.6, "same_social_handle": 0.6, "same_street": 0.5,
           "same_postal_code": 0.4, "same_email_domain": 0.3, "same_city": 0.25}
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "yahoo.co.uk", "hotmail.com", "outlook.com", "live.com",
    "msn.com", "icloud.com", "me.com", "mac.com", "aol.com", "protonmail.com", "proton.me", "gmx.com", "gmx.de",
    "mail.com", "zoho.com", "yandex.com", "yandex.ru", "mail.ru", "chmail.ir", "mihanmail.ir", "email.ir"})
identity_table = IdentityRow.__table__


@dataclass(frozen=True)
class MatchProfile:
    """What duplicate matching looks at, normalized once per contact."""

    id: str
    display_name: str | None
    name_tokens: tuple[str, ...]
    cities: frozenset[str]
    streets: frozenset[str]
    postal_codes: frozenset[str]
    birth_date: date | None
    email_locals: frozenset[str]
    email_domains: frozenset[str]
    handles: frozenset[tuple[str, str]]


def _alnum(text: str | None) -> str:
    return "".join(ch for ch in search_key(text) if ch.isalnum())


def match_profile(contact: ContactPublic) -> MatchProfile:
    names = " ".join(part for part in (contact.given_name, contact.family_name) if part)
    if not names and contact.display_name and "@" not in contact.display_name:
        names = contact.display_name
    emails = [email.lower().rpartition("@") for email in contact.emails]
    return MatchProfile(
        id=contact.id, display_name=contact.display_name, name_tokens=tuple(search_key(names).split()),
        cities=frozenset(search_key(a.city) for a in contact.addresses if a.city),
        streets=frozenset(_alnum(a.line1) for a in contact.addresses if _alnum(a.line1)),
        postal_codes=frozenset(_alnum(a.postal_code) for a in contact.addresses if _alnum(a.postal_code)),
        birth_date=contact.birth_date,
        email_locals=frozenset(local for local, _, _ in emails),
        email_domains=frozenset(domain for _, _, domain in emails if domain not in FREE_MAIL),
        handles=frozenset((network, search_key(handle).lstrip("@"))
                          for network, handle in contact.social_handles.items()))


def name_similarity(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """1.0 for the same name (in any word order, with or without spaces); else difflib's ratio."""
    if not a or not b:
        return 0.0
    pairs = [("".join(a), "".join(b)), ("".join(sorted(a)), "".join(sorted(b)))]
    if any(x == y for x, y in pairs):
        return 1.0
    return max(SequenceMatcher(None, x, y).ratio() for x, y in pairs)


def shared_attributes(a: MatchProfile, b: MatchProfile) -> list[DuplicateReason]:
    reasons = []
    if a.birth_date and a.birth_date == b.birth_date:
        reasons.append(DuplicateReason(code="same_birth_date", detail=a.birth_date.isoformat()))
    checks = (("same_email_local_part", a.email_locals & b.email_locals),
              ("same_social_handle", {f"{n}:{h}" for n, h in a.handles & b.handles}),
              ("same_street", a.streets & b.streets), ("same_postal_code", a.postal_codes & b.postal_codes),
              ("same_email_domain", a.email_domains & b.email_domains), ("same_city", a.cities & b.cities))
    for code, common in checks:
        if common:
            reasons.append(DuplicateReason(code=code, detail=sorted(common)[0]))
    return reasons


def score_candidate(target: MatchProfile, candidate: MatchProfile) -> DuplicateCandidate | None:
    """The candidate with its score and reasons, or None when it is not a likely duplicate."""
    similarity = name_similarity(target.name_tokens, candidate.name_tokens)
    if similarity < MIN_NAME_SIMILARITY:
        return None
    shared = shared_attributes(target, candidate)
    if not shared:
        return None
    name_reason = (DuplicateReason(code="same_name") if similarity == 1.0
                   else DuplicateReason(code="similar_name", detail=f"{similarity:.2f}"))
    attributes = min(1.0, sum(WEIGHTS[reason.code] for reason in shared))
    score = round(NAME_WEIGHT * similarity + ATTRIBUTE_WEIGHT * attributes, 3)
    return DuplicateCandidate(id=candidate.id, display_name=candidate.display_name, score=score,
                              reasons=[name_reason, *shared])


def rank(target: ContactPublic, candidates: list[ContactPublic], *, limit: int) -> list[DuplicateCandidate]:
    profile = match_profile(target)
    scored = [score_candidate(profile, match_profile(c)) for c in candidates if c.id != target.id]
    found = [c for c in scored if c is not None]
    return sorted(found, key=lambda c: (-c.score, c.id))[:limit]


def name_prefixes(tokens: tuple[str, ...]) -> list[str]:
    if len(tokens) < 2:
        return list(tokens)
    return [f"{tokens[0]} {tokens[1][0]}", f"{tokens[-1]} {tokens[0][0]}", tokens[0] + tokens[1]]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(column, prefix: str, dialect: str):
    condition = column.like(_escape(prefix) + "%", escape="\\")
    if dialect == "sqlite":  # binary collation: a range lets SQLite use the index, LIKE keeps it exact
        condition = condition & (column >= prefix) & (column < prefix[:-1] + chr(ord(prefix[-1]) + 1))
    return condition


async def candidate_ids(session: AsyncSession, target: ContactPublic, profile: MatchProfile) -> set[str]:
    dialect = session.get_bind().dialect.name
    base = (ContactRow.status == "active", ContactRow.id != target.id)
    queries = []
    prefixes = name_prefixes(profile.name_tokens)
    if prefixes:
        queries.append(select(ContactRow.id).where(*base, or_(*(_starts_with(ContactRow.sort_name, p, dialect)
                                                                for p in prefixes))))
    family = compact_key(profile.name_tokens[-1]) if profile.name_tokens else ""
    if profile.cities and family:
        in_city = exists().where(FacetRow.contact_id == ContactRow.id, FacetRow.facet == "city",
                                 FacetRow.value.in_(sorted(profile.cities)))
        queries.append(select(ContactRow.id).where(*base, in_city,
                                                   ContactRow.search_text.like(f"%{_escape(family)}%", escape="\\")))
    for local in sorted(profile.email_locals):
        queries.append(select(identity_table.c.contact_id).where(
            identity_table.c.kind == "email", identity_table.c.system == "",
            _starts_with(identity_table.c.value, local + "@", dialect), identity_table.c.contact_id != target.id))
    found: set[str] = set()
    for query in queries:
        found.update((await session.execute(query.limit(CANDIDATE_CAP))).scalars())
    return found


async def find_duplicates(ctx: ServiceContext, contact_id: str, *, limit: int = 20) -> DuplicateList:
    async with ctx.read_session_factory() as session:
        target = await contact_store.load(session, contact_id)
        if target.status == "merged":
            raise Conflict(f"contact {contact_id} was merged into {target.merged_into}; ask for that one's duplicates",
                           merged_into=target.merged_into)
        if target.status == "erased":
            raise NotFound(f"contact {contact_id} was erased", contact_id=contact_id)
        ids = await candidate_ids(session, target, match_profile(target))
        candidates = await contact_store.load_many(session, sorted(ids)) if ids else {}
    active = [c for c in candidates.values() if c.status == "active"]
    return DuplicateList(contact_id=contact_id, items=rank(target, active, limit=limit))
