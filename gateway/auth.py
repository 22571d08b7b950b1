"""Who is calling and what they may do: the key from `Authorization: Bearer` or `X-API-Key`,
looked up through a short cache, checked against the scope the route needs."""
from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from . import api_keys
from .api_keys import ApiKey
from .problems import Forbidden, Unauthorized
from .scopes import ADMIN, grants


@dataclass(frozen=True)
class Principal:
    key_id: str | None  # None: authentication is off
    name: str
    scopes: frozenset[str]
    rate_per_second: float | None = None
    rate_burst: int | None = None

    def require(self, scope: str) -> None:
        if not grants(self.scopes, scope):
            raise Forbidden(f"the key {self.name!r} lacks the scope {scope}", required_scope=scope)


def basic_user(credentials: str) -> str | None:
    """The user name of Basic credentials whose password is empty, else None."""
    try:
        user, sep, password = base64.b64decode(credentials, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user.strip() if sep and not password and user.strip() else None


ANONYMOUS = Principal(key_id=None, name="anonymous (GATEWAY_AUTH=off)", scopes=frozenset({ADMIN}))


def presented_key(request: Request) -> str | None:
    """`Bearer <key>`, `X-API-Key`, or HTTP Basic with the key as the user name and no password
    (how Segment and RudderStack SDKs send their write key: docs/tracking.md)."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if scheme.lower() == "basic" and (key := basic_user(credentials.strip())):
            return key
        raise Unauthorized("the Authorization header must read 'Bearer <key>' (or Basic with the key as the user "
                           "name and an empty password)", error="invalid_request")
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class KeyCache:
    """Key records by prefix for `ttl_s` seconds (misses too), so a request rarely reads the
    database. A revocation through this process's admin API takes effect at once; one made by
    the CLI or another replica within `ttl_s`."""

    def __init__(self, engine: AsyncEngine, ttl_s: float, max_entries: int = 10_000,
                 on_load: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_load = on_load
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._loading: dict[str, asyncio.Future] = {}

    async def get(self, prefix: str) -> ApiKey | None:
        now = time.monotonic()
        cached = self._entries.get(prefix)
        if cached and cached[0] > now:
            return cached[1]
        if prefix in self._loading:  # one database read per prefix at a time
            return await asyncio.shield(self._loading[prefix])
        future = asyncio.get_running_loop().create_future()
        self._loading[prefix] = future
        try:
            if self.on_load:
                self.on_load()
            record = await api_keys.find_by_prefix(engine=self.engine, prefix=prefix)
            if len(self._entries) >= self.max_entries:
                self._evict(now)
            self._entries[prefix] = (now + self.ttl_s, record)
            future.set_result(record)
            return record
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._loading[prefix]

    def forget(self, prefix: str) -> None:
        self._entries.pop(prefix, None)

    def _evict(self, now: float) -> None:
        self._entries = {p: entry for p, entry in self._entries.items() if entry[0] > now}
        while len(self._entries) >= self.max_entries:  # all fresh: drop the oldest inserted
            self._entries.pop(next(iter(self._entries)))


class Authenticator:
    def __init__(self, cache: KeyCache | None, enabled: bool) -> None:
        self.cache = cache
        self.enabled = enabled

    async def authenticate(self, request: Request) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        key = presented_key(request)
        if key is None:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                               error="")
        prefix = api_keys.parse_key(key)
        record = await self.cache.get(prefix) if prefix else None
        if record is None or not api_keys.matches(record, key):
            raise Unauthorized("the API key is not valid")
        if record.revoked:
            raise Unauthorized("the API key has been revoked")
        return Principal(key_id=record.id, name=record.name, scopes=frozenset(record.scopes),
                         rate_per_second=record.rate_per_second, rate_burst=record.rate_burst)
