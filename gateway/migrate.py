"""The gateway's Alembic history (gateway/migrations), run with the same env as the services'.

`python -m gateway.migrate` upgrades the database named by GATEWAY_DATABASE_URL (or the SQLite
default). The gateway also does it on start unless GATEWAY_MIGRATE_ON_START=false.
"""
from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from services.common.database import create_engine

from .settings import GatewaySettings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["service"] = "gateway"
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking, and runs its own event loop: call it from a thread (or a process)."""
    create_engine(url)  # creates the SQLite file's folder
    command.upgrade(alembic_config(url), revision)


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python -m gateway.migrate", file=sys.stderr)
        return 2
    settings = GatewaySettings()
    upgrade(settings.database_url)
    print(f"gateway: database at head ({settings.database_url})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
