"""API keys: creating, listing, revoking and finding them. Only a SHA-256 of each key is kept.

A key reads `crm_<prefix>_<secret>`: the prefix (8 hex characters) is public and finds the
record; the secret is 32 random bytes. A plain SHA-256 is enough for a 256-bit random secret
(no dictionary to try), and it is cheap enough to check on every request.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.audit import Caller

from . import audit_store
from .models import api_keys
from .scopes import normalize_scopes

KEY_PREFIX = "crm_"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    scopes: tuple[str, ...]
    rate_per_second: float | None
    rate_burst: int | None
    created_at: datetime
    revoked_at: datetime | None
    secret_hash: str = ""

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "scopes": list(self.scopes),
                "rate_per_second": self.rate_per_second, "rate_burst": self.rate_burst,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    secret: str  # the whole key; shown once, never stored


class KeyNotFound(LookupError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if not sep or len(prefix) != 8 or len(secret) < 32:
        return None
    return prefix


def matches(record: ApiKey, key: str) -> bool:
    return hmac.compare_digest(record.secret_hash, hash_key(key))


def _record(row) -> ApiKey:
    return ApiKey(id=row.id, name=row.name, prefix=row.prefix, scopes=tuple(row.scopes),
                  rate_per_second=row.rate_per_second, rate_burst=row.rate_burst,
                  created_at=row.created_at, revoked_at=row.revoked_at, secret_hash=row.secret_hash)


async def create_key(*, engine: AsyncEngine, name: str, scopes: list[str], caller: Caller,
                     rate_per_second: float | None = None, rate_burst: int | None = None) -> CreatedKey:
    """Raises UnknownScope (a ValueError) for an unknown scope, ValueError for a bad name or rate.
    The audit trail records `caller` making it, in the same transaction."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("a key needs a name of 1 to 200 characters")
    if rate_per_second is not None and rate_per_second <= 0:
        raise ValueError("rate_per_second must be positive")
    if rate_burst is not None and rate_burst < 1:
        raise ValueError("rate_burst must be at least 1")
    scopes = normalize_scopes(scopes)
    for _attempt in range(5):  # a prefix collision (1 in 4 billion per pair) just draws again
        prefix = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        record = ApiKey(id=str(uuid.uuid4()), name=name, prefix=prefix, scopes=tuple(scopes),
                        rate_per_second=rate_per_second, rate_burst=rate_burst,
                        created_at=datetime.now(timezone.utc), revoked_at=None, secret_hash=hash_key(secret))
        try:
            async with engine.begin() as connection:
                await connection.execute(api_keys.insert().values(
                    id=record.id, name=name, prefix=prefix, secret_hash=record.secret_hash, scopes=scopes,
                    rate_per_second=rate_per_second, rate_burst=rate_burst, created_at=record.created_at))
                await audit_store.insert_entries(connection, [audit_store.gateway_entry(
                    caller, "api_keys.create", resource=f"api_key:{record.id}",
                    detail={"name": name, "prefix": prefix, "scopes": scopes})])
        except IntegrityError:
            continue
        return CreatedKey(record=record, secret=secret)
    raise RuntimeError("could not draw a unique key prefix")


async def list_keys(*, engine: AsyncEngine, include_revoked: bool = True) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    async with engine.connect() as connection:
        return [_record(row) for row in await connection.execute(query)]


async def find_by_prefix(*, engine: AsyncEngine, prefix: str) -> ApiKey | None:
    async with engine.connect() as connection:
        row = (await connection.execute(select(api_keys).where(api_keys.c.prefix == prefix))).first()
    return _record(row) if row else None


async def revoke_key(*, engine: AsyncEngine, key_id: str, caller: Caller) -> ApiKey:
    """Revokes a key (again is harmless, and not recorded again); raises KeyNotFound for an unknown id."""
    async with engine.begin() as connection:
        revoked = await connection.execute(update(api_keys).where(api_keys.c.id == key_id,
                                                                  api_keys.c.revoked_at.is_(None))
                                           .values(revoked_at=datetime.now(timezone.utc)))
        row = (await connection.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if row is not None and revoked.rowcount == 1:
            await audit_store.insert_entries(connection, [audit_store.gateway_entry(
                caller, "api_keys.revoke", resource=f"api_key:{key_id}", detail={"name": row.name})])
    if row is None:
        raise KeyNotFound(key_id)
    return _record(row)
