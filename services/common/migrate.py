"""Alembic migrations, one history per service under services/<name>/migrations/.

`python -m services.common.migrate contacts` upgrades the database named by
CONTACTS_DATABASE_URL (or the SQLite default) to the newest revision.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData

from .database import create_engine, is_sqlite
from .settings import load_settings

SERVICES_DIR = Path(__file__).resolve().parent.parent


def alembic_config(service: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["service"] = service
    return config


def upgrade(service: str, url: str, revision: str = "head") -> None:
    """Blocking; call from a thread (or a process) without a running event loop."""
    create_engine(url)  # creates the SQLite file's folder
    command.upgrade(alembic_config(service, url), revision)


def run_env(metadata: MetaData) -> None:
    """The body of every service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")

    def do_run(connection) -> None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=is_sqlite(url), compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    async def run_online() -> None:
        # The project's own engine: on SQLite it begins real transactions (the driver's default
        # would commit each CREATE TABLE at once), so a migration killed half-way leaves nothing.
        engine = create_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
            await connection.commit()
        await engine.dispose()

    asyncio.run(run_online())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m services.common.migrate <service>", file=sys.stderr)
        return 2
    service = argv[0]
    if not (SERVICES_DIR / service / "migrations").is_dir():
        print(f"no migrations for service {service!r}", file=sys.stderr)
        return 2
    settings = load_settings(service)
    upgrade(service, settings.database_url)
    print(f"{service}: database at head ({settings.database_url})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
