"""The secrets of a developer's checkout, made once and kept under ``var/`` (mode 0600), so that
``make run`` is secure by default without asking anything:

- ``var/dev-admin-key``: an API key with the ``admin`` scope in the gateway's key database, made
  on the first ``make run`` (and again if its record is gone or revoked). ``make run`` prints it
  as ``export CRM_API_KEY=...``; ``make demo`` falls back to this file when CRM_API_KEY is unset.
- ``var/suppression-secret``: the HMAC key of the contacts service's suppression list. It must
  outlive every restart, or the digests kept after an erasure would no longer match anything.

``make clean`` removes ``var/`` with the databases these secrets belong to.
"""
from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from gateway import api_keys, migrate
from services.common.audit import Caller
from services.common.database import create_engine

VAR = Path(__file__).resolve().parent.parent / "var"
DEV_KEY_FILE = VAR / "dev-admin-key"
SUPPRESSION_SECRET_FILE = VAR / "suppression-secret"
DEV_KEY_NAME = "dev admin (make run)"
MAKE_RUN = Caller(key_id=None, key_name="make run", request_id=None)


def _write_private(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")


def kept_secret(path: Path = SUPPRESSION_SECRET_FILE) -> str:
    """The secret in `path`, made (32 random bytes) the first time."""
    if path.is_file() and (value := path.read_text().strip()):
        return value
    value = secrets.token_urlsafe(32)
    _write_private(path, value)
    return value


def read_dev_key(path: Path = DEV_KEY_FILE) -> str | None:
    return path.read_text().strip() or None if path.is_file() else None


async def _valid(engine, key: str) -> bool:
    prefix = api_keys.parse_key(key)
    record = await api_keys.find_by_prefix(engine=engine, prefix=prefix) if prefix else None
    return record is not None and not record.revoked and api_keys.matches(record, key)


async def _dev_key(database_url: str, path: Path) -> tuple[str, bool]:
    engine = create_engine(database_url)
    try:
        kept = read_dev_key(path)
        if kept and await _valid(engine, kept):
            return kept, False
        created = await api_keys.create_key(engine=engine, name=DEV_KEY_NAME, scopes=["admin"], caller=MAKE_RUN)
    finally:
        await engine.dispose()
    _write_private(path, created.secret)
    return created.secret, True


def dev_admin_key(database_url: str, path: Path = DEV_KEY_FILE) -> tuple[str, bool]:
    """(the development admin key, whether it was made now). Migrates the key database first: on
    a fresh checkout it does not exist yet."""
    migrate.upgrade(database_url)
    return asyncio.run(_dev_key(database_url, path))
