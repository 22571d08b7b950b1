"""Suppression after erasure: the erased person's identities are not taken in again unnoticed.

Erasing a person (right to erasure, GDPR art. 17) removes their data, yet the same email often
comes straight back: an old list re-imported, a platform syncing its customers, the next order.
A person who objected to the processing (art. 21; for direct marketing, art. 21(3): their data
"shall no longer be processed for such purposes") would be back in the campaigns. So an erasure
keeps, for each email, phone and external id of the person, only an HMAC-SHA256 of it under
CONTACTS_SUPPRESSION_SECRET: a pseudonym (art. 4(5)) that recognises the identity when it comes
back and cannot be read back without the secret (keep the secret apart from the database).

Whenever a write would give a contact an identity it does not hold yet (create, PATCH, batch,
import, the customer of an order), the new identities are checked against the list, and
CONTACTS_SUPPRESSION_MODE decides: `refuse` (the default) answers 409 `identity-suppressed`
(an order is kept, as a guest sale); `flag` stores it and tags the contact `previously-erased`,
for a person to check the new legal basis (the person may well have come back by themselves).
An operator can lift the suppression of an identity (`POST /v1/privacy/suppressions/lift`).
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from functools import cache
from typing import Any, Iterable

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.common import audit
from services.common.database import BulkStatement, upsert_statement
from services.common.errors import Conflict

from .models import SuppressedIdentityRow

Key = tuple[str, str, str]  # (kind, system, value), as contact_record.identities gives them
FLAG_TAG = "previously-erased"
suppressed = SuppressedIdentityRow.__table__
FEW_KEYS = 60  # one contact's identities at most: looked up by a statement compiled once per count


class IdentitySuppressed(Conflict):
    slug, title = "identity-suppressed", "Identity of an erased person"


def digest(secret: str, key: Key) -> str:
    return hmac.new(secret.encode(), "\x1f".join(key).encode(), hashlib.sha256).hexdigest()


async def remember(session: AsyncSession, secret: str, keys: Iterable[Key], *, erasure_id: str,
                   now: datetime) -> None:
    """Keep the digests of an erased person's identities (in the erasure's transaction)."""
    rows = {digest(secret, key): key[0] for key in keys}
    if rows:
        statement = upsert_statement(session, suppressed).on_conflict_do_nothing(index_elements=["digest"])
        await session.execute(statement, [{"digest": d, "kind": kind, "erasure_id": erasure_id, "suppressed_at": now}
                                          for d, kind in sorted(rows.items())])


async def suppressed_keys(session: AsyncSession, secret: str, keys: Iterable[Key]) -> set[Key]:
    """Which of `keys` belonged to an erased person."""
    by_digest = {digest(secret, key): key for key in keys}
    if not by_digest:
        return set()
    if len(by_digest) <= FEW_KEYS:
        rows = await _lookup(len(by_digest)).fetch(session, {f"d{i}": d for i, d in enumerate(by_digest)})
        found = [d for d, in rows]
    else:
        found = (await session.execute(select(suppressed.c.digest).where(suppressed.c.digest.in_(by_digest)))).scalars()
    return {by_digest[d] for d in found}


@cache
def _lookup(count: int) -> BulkStatement:
    """Which of `count` digests are suppressed (every write of one contact asks)."""
    return BulkStatement(select(suppressed.c.digest).where(suppressed.c.digest.in_(
        [bindparam(f"d{i}") for i in range(count)])))


def _label(key: Key) -> str:
    kind, system, value = key
    return f"external id {system}:{value}" if kind == "external" else f"{kind} {value}"


def apply_policy(mode: str, changes: dict[str, Any], matched: set[Key], *,
                 current_tags: list[str]) -> dict[str, Any]:
    """The changes to write given the suppressed identities they add: raises IdentitySuppressed
    (mode refuse), or adds the review tag (mode flag). `current_tags`: the contact's tags now
    (none for a new one), which a PATCH's `tags` would otherwise replace."""
    if not matched:
        return changes
    labels = ", ".join(sorted(_label(key) for key in matched))
    if mode == "refuse":
        raise IdentitySuppressed(f"{labels} belonged to a person who was erased and is not taken in again; an "
                                 "operator can lift it (POST /v1/privacy/suppressions/lift) when the person asks",
                                 identities=sorted(key[0] for key in matched))
    tags = list(changes["tags"] if "tags" in changes else current_tags)
    return {**changes, "tags": tags if FLAG_TAG in tags else [*tags, FLAG_TAG]}


def is_refusal(problem: dict[str, Any] | None) -> bool:
    """Whether a per-item problem (upsert.ItemResult.error) is this refusal."""
    return bool(problem) and problem.get("type", "").endswith("/" + IdentitySuppressed.slug)


async def screen(session: AsyncSession, settings, changes: dict[str, Any], new_keys: Iterable[Key], *,
                 current_tags: list[str]) -> dict[str, Any]:
    """apply_policy for one write, looking its new identities up first."""
    matched = await suppressed_keys(session, settings.contacts_suppression_secret, new_keys)
    return apply_policy(settings.contacts_suppression_mode, changes, matched, current_tags=current_tags)


async def lift(ctx, keys: list[Key]) -> int:
    """Forget these identities' suppression (the use case; audited); how many were suppressed."""
    digests = [digest(ctx.settings.contacts_suppression_secret, key) for key in keys]
    async with ctx.session_factory() as session, session.begin():
        lifted = (await session.execute(delete(suppressed).where(suppressed.c.digest.in_(digests)))).rowcount
        await audit.record(session, ctx, "privacy.suppression_lift", [],
                           detail={"identities": len(keys), "lifted": lifted})
    return lifted
