"""make run's development admin key and kept secrets (deploy/local_secrets.py): made once, kept
private under var/, reused on the next start, made again when the key no longer works."""
from __future__ import annotations

import asyncio
import stat

from deploy import local_secrets
from gateway import api_keys
from services.common.audit import Caller
from services.common.database import create_engine


def revoke(url: str, secret: str) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            record = await api_keys.find_by_prefix(engine=engine, prefix=api_keys.parse_key(secret))
            await api_keys.revoke_key(engine=engine, key_id=record.id, caller=Caller(None, "test", None))
        finally:
            await engine.dispose()
    asyncio.run(run())


def test_the_dev_key_is_made_once_kept_private_and_remade_when_revoked(tmp_path):
    url, path = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", tmp_path / "var" / "dev-admin-key"
    key, made = local_secrets.dev_admin_key(url, path)
    assert made and api_keys.parse_key(key) and path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secrets.dev_admin_key(url, path) == (key, False)
    assert local_secrets.read_dev_key(path) == key
    revoke(url, key)
    again, made = local_secrets.dev_admin_key(url, path)
    assert made and again != key and local_secrets.read_dev_key(path) == again


def test_a_kept_secret_outlives_restarts(tmp_path):
    path = tmp_path / "suppression-secret"
    first = local_secrets.kept_secret(path)
    assert len(first) >= 32 and local_secrets.kept_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secrets.read_dev_key(tmp_path / "none") is None
