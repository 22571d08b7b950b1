"""Set-up shared by the benchmarks (not a benchmark itself: `make bench` skips `_*.py`)."""
from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from services.common.migrate import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def pg_admin(server_url: str, statement: str) -> None:
    """Run one statement on the server's maintenance database (CREATE/DROP DATABASE)."""
    import asyncpg

    connection = await asyncpg.connect(make_url(server_url).set(drivername="postgresql")
                                       .render_as_string(hide_password=False))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class Database:
    """A fresh database for one service: a SQLite file in the temp dir, or `bench_<random>` on a
    PostgreSQL server, migrated by `create` and dropped by `drop`."""

    def __init__(self, server_url: str | None, workdir: Path, service: str = "contacts") -> None:
        self.server_url = server_url
        self.service = service
        self.pg_name: str | None = None
        if server_url and make_url(server_url).get_backend_name() == "postgresql":
            server = make_url(server_url)
            self.pg_name = f"bench_{uuid.uuid4().hex[:10]}"
            self.url = server.set(database=self.pg_name).render_as_string(hide_password=False)
            self.kind = f"PostgreSQL (database {self.pg_name} on {server.host}:{server.port or 5432})"
        elif server_url:
            raise SystemExit("--database-url must be a postgresql+asyncpg:// URL (SQLite is the default)")
        else:
            self.url = f"sqlite+aiosqlite:///{workdir / f'{service}.db'}"
            self.kind = "SQLite (WAL, file in a temp dir)"

    def create(self) -> None:
        if self.pg_name:
            asyncio.run(pg_admin(self.server_url, f'CREATE DATABASE "{self.pg_name}"'))
        upgrade(self.service, self.url)

    def drop(self) -> None:
        if self.pg_name:
            try:
                asyncio.run(pg_admin(self.server_url, f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            except Exception as exc:  # report, but let the rest of the clean-up run
                print(f"could not drop database {self.pg_name}: {exc}", file=sys.stderr)
