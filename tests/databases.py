"""Fresh, migrated databases for tests: SQLite by default, PostgreSQL when CRM_TEST_POSTGRES_URL
is set. Each service's migrations run once per test session into a template; every test then
gets its own copy (a file copy, or CREATE DATABASE ... TEMPLATE), so tests are isolated and
the real migrations are what the tests run against."""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from services.common.migrate import upgrade

POSTGRES_URL = os.environ.get("CRM_TEST_POSTGRES_URL")


def _pg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class DatabaseFactory:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.templates: dict[str, str] = {}
        self.created: list[str] = []
        self.run_id = uuid.uuid4().hex[:8]

    async def template(self, service: str) -> str:
        if service not in self.templates:
            if POSTGRES_URL:
                name = f"crm_tpl_{service}_{self.run_id}"
                await self._pg_admin(f'CREATE DATABASE "{name}"')
                self.created.append(name)
                url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
            else:
                url = f"sqlite+aiosqlite:///{self.workdir / f'template_{service}.db'}"
            await asyncio.to_thread(upgrade, service, url)
            self.templates[service] = url
        return self.templates[service]

    async def fresh(self, service: str) -> str:
        template = await self.template(service)
        if POSTGRES_URL:
            name = f"crm_t_{service}_{uuid.uuid4().hex[:12]}"
            template_name = make_url(template).database
            await self._pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
            self.created.append(name)
            return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        path = self.workdir / f"{service}_{uuid.uuid4().hex[:12]}.db"
        shutil.copyfile(make_url(template).database, path)
        return f"sqlite+aiosqlite:///{path}"

    async def drop_all(self) -> None:
        if not POSTGRES_URL:
            return
        for name in reversed(self.created):
            await self._pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    async def _pg_admin(self, statement: str) -> None:
        connection = await asyncpg.connect(_pg_dsn(POSTGRES_URL))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()
