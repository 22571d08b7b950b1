"""Each service's Alembic history builds exactly the schema its models describe."""
from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.common.database import create_engine

SERVICES = sorted(p.parent.parent.name for p in Path("services").glob("*/migrations/env.py"))


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_models(service, database_factory):
    url = await database_factory.fresh(service)
    metadata = importlib.import_module(f"services.{service}.models").metadata
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), metadata))
    finally:
        await engine.dispose()
    assert diff == [], f"{service}: models and migrations differ; add a migration: {diff}"


async def test_gateway_migrations_match_its_tables(tmp_path):
    from gateway import migrate
    from gateway.models import metadata

    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": False}), metadata))
    finally:
        await engine.dispose()
    assert diff == [], f"gateway: models and migrations differ; add a migration: {diff}"
