"""Bootstrap for new subscribers: re-publish the current state of every aggregate a service owns
as snapshot events, so a system that subscribes today builds its copy without replaying history.

    python -m services.common.snapshots contacts [--batch-size 500]

The events go INTO THE SERVICE'S OUTBOX, not straight to Kafka: the running service's relay
publishes them in commit order with everything else (so a snapshot never overtakes a change
staged before it), and a broker that is down only delays them. The relay of a running service
picks them up on its next poll; a stopped service publishes them when it starts.

Each service names its aggregates in one module (SNAPSHOT_MODULES) that exposes `SNAPSHOTS`, a
ServiceSnapshots. Aggregates are read by keyset pagination over their ids and each page is
staged in a transaction of its own, so a table of millions never holds one long transaction (or
SQLite's single write lock) and a failure part-way keeps the pages already staged: running the
command again only re-sends snapshots, which subscribers skip by `sequence`.

A snapshot's `sequence` is the aggregate's current version, so a subscriber (or one of this
project's consumers) that already holds that version skips it as stale, and one that holds an
older version applies it like an update. A change committed while the command runs is either
in the snapshot or has a higher version than it: either way the newest state wins.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .database import create_engine, create_session_factory
from .kernel_tables import KernelTables
from .outbox import add_events
from .settings import load_settings

SNAPSHOT_MODULES = {
    "contacts": "services.contacts.contact_snapshots",
    "orders": "services.orders.order_snapshots",
    "interactions": "services.interactions.interaction_snapshots",
    "segmentation": "services.segmentation.profile_snapshots",
}
DEFAULT_BATCH_SIZE = 500

Key = tuple  # where a page ends: the aggregate's id (or ids, for a composite key)
Page = list[tuple[Key, dict[str, Any]]]  # (key, snapshot event) in key order


@dataclass(frozen=True)
class SnapshotSource:
    """One kind of aggregate. `read_page(session, after, limit)` returns up to `limit`
    (key, event) pairs whose keys follow `after` (None: from the start), in key order."""

    aggregatetype: str  # the outbox's aggregatetype column: contact, order, ...
    read_page: Callable[[AsyncSession, Key | None, int], Awaitable[Page]]


@dataclass(frozen=True)
class ServiceSnapshots:
    tables: KernelTables
    topic: str  # without the deployment's kafka_topic_prefix
    sources: list[SnapshotSource]


def snapshots_of(service: str) -> ServiceSnapshots:
    """The service's snapshot module, imported only when asked for (nothing at import time)."""
    return importlib.import_module(SNAPSHOT_MODULES[service]).SNAPSHOTS


def batch_engine(engine: AsyncEngine) -> AsyncEngine:
    """On PostgreSQL each page is read in one REPEATABLE READ snapshot, so an aggregate read in
    several statements (a profile and its child rows) never mixes two commits. Inserting into
    the outbox cannot fail to serialize. SQLite's BEGIN IMMEDIATE already excludes writers."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="REPEATABLE READ")
    return engine


async def stage_snapshots(engine: AsyncEngine, snapshots: ServiceSnapshots, *, topic: str,
                          batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, int]:
    """Stage one snapshot event per aggregate in the outbox; returns the count per aggregatetype.
    `topic` is the outbox topic with the deployment's prefix (ServiceContext.topic)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    session_factory = create_session_factory(batch_engine(engine))
    counts: dict[str, int] = {}
    for source in snapshots.sources:
        counts[source.aggregatetype] = 0
        after: Key | None = None
        while True:
            async with session_factory() as session, session.begin():
                page = await source.read_page(session, after, batch_size)
                await add_events(session, snapshots.tables, [event for _key, event in page],
                                 aggregatetype=source.aggregatetype, topic=topic)
            counts[source.aggregatetype] += len(page)
            if len(page) < batch_size:
                break
            after = page[-1][0]
    return counts


async def run(service: str, batch_size: int) -> dict[str, int]:
    """The command: the service's database as the service itself finds it (load_settings)."""
    settings = load_settings(service)
    snapshots = snapshots_of(service)
    engine = create_engine(settings.database_url)
    try:
        return await stage_snapshots(engine, snapshots, topic=settings.kafka_topic_prefix + snapshots.topic,
                                     batch_size=batch_size)
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.snapshots",
                                     description="Stage a snapshot event of every aggregate a service owns in its "
                                                 "outbox; the service's relay publishes them.")
    parser.add_argument("service", choices=sorted(SNAPSHOT_MODULES))
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"aggregates per transaction (default {DEFAULT_BATCH_SIZE})")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    counts = asyncio.run(run(args.service, args.batch_size))
    detail = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    print(f"{args.service}: staged {sum(counts.values())} snapshot events ({detail}) in the outbox; "
          "the service's relay publishes them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
