"""End-to-end fixtures: the broker, every service and the gateway as real processes
(deploy/local_system.py), on fresh databases (PostgreSQL ones when CRM_TEST_POSTGRES_URL is set),
with topics of their own on the session's broker, and API keys required (the default)."""
from __future__ import annotations

import asyncio

import pytest

from deploy.local_system import LocalSystem

SERVICES = ("contacts", "orders", "interactions", "segmentation")


@pytest.fixture
def system(broker, database_factory, tmp_path, unique):
    async def databases():
        return {name: await database_factory.fresh(name) for name in SERVICES}

    local = LocalSystem(workdir=tmp_path / "system", bootstrap=broker["bootstrap"],
                        database_urls=asyncio.run(databases()), topic_prefix=f"e2e{unique}.",
                        env={"GATEWAY_RATE_PER_SECOND": "1000", "GATEWAY_RATE_BURST": "2000",
                             # An idempotency claim of a killed request frees up in seconds, not a minute.
                             "IDEMPOTENCY_LEASE_S": "3"})
    local.start()
    try:
        yield local
    finally:
        local.stop()
