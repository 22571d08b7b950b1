"""The SQLite writer's driver: CPU per write transaction through aiosqlite's worker thread (the
stock driver, which readers keep) and run in place on the loop's thread (services/common/
sqlite_on_loop.py, what every service's writer uses), side by side in one run.

Each transaction is a service write in miniature: BEGIN IMMEDIATE, two indexed look-ups, an
insert of one row, of three rows (executemany) and of one more, COMMIT; --concurrency of them
at a time on the one writer connection, as requests queue for it. Prints the median of --runs
runs of each and their ratio.

    .venv/bin/python bench/bench_sqlite_driver.py [--transactions 3000] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from services.common import database  # noqa: E402


def writer_engine(path: Path, *, in_place: bool):
    if in_place:
        return database.create_engine(f"sqlite+aiosqlite:///{path}")
    # The same engine as database.create_engine builds, with aiosqlite's own connection.
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=1, max_overflow=0,
                                 connect_args={"timeout": database.SQLITE_BUSY_TIMEOUT_MS / 1000})
    database._configure_sqlite(engine)
    return engine


async def one_run(path: Path, *, in_place: bool, transactions: int, concurrency: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per transaction."""
    engine = writer_engine(path, in_place=in_place)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, a TEXT, b INT)"))
        await connection.execute(text("CREATE TABLE IF NOT EXISTS u (id TEXT PRIMARY KEY, t TEXT)"))
        await connection.execute(text("CREATE INDEX IF NOT EXISTS u_t ON u (t)"))
        await connection.execute(text("CREATE INDEX IF NOT EXISTS t_a ON t (a)"))

    async def transaction() -> None:
        key = uuid.uuid4().hex
        async with engine.begin() as connection:
            await connection.execute(text("SELECT * FROM t WHERE a = :a"), {"a": key})
            await connection.execute(text("SELECT * FROM u WHERE t = :t"), {"t": key})
            await connection.execute(text("INSERT INTO t VALUES (:i, :a, 1)"), {"i": key, "a": key})
            await connection.execute(text("INSERT INTO u VALUES (:i, :t)"),
                                     [{"i": f"{key}{n}", "t": key} for n in range(3)])
            await connection.execute(text("INSERT INTO u VALUES (:i, :t)"), {"i": f"{key}z", "t": key})

    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(transactions // concurrency):
        await asyncio.gather(*(transaction() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await engine.dispose()
    done = transactions // concurrency * concurrency
    return cpu / done * 1000, wall / done * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-driver-") as folder:
        for run in range(args.runs):
            for in_place in (False, True):  # alternated, so drift in the machine hits both alike
                path = Path(folder) / f"run{run}-{in_place}.db"
                results[in_place].append(asyncio.run(one_run(path, in_place=in_place, transactions=args.transactions,
                                                             concurrency=args.concurrency)))
    medians = {k: (statistics.median(c for c, _ in v), statistics.median(w for _, w in v)) for k, v in results.items()}
    for in_place, label in ((False, "aiosqlite's worker thread"), (True, "in place on the loop (sqlite_on_loop)")):
        cpu, wall = medians[in_place]
        print(f"{label}: {cpu:.3f} ms CPU, {wall:.3f} ms wall per transaction "
              f"(median of {args.runs} runs of {args.transactions}, {args.concurrency} at a time)")
    print(f"ratio, thread / in place: CPU {medians[False][0] / medians[True][0]:.2f}x, "
          f"wall {medians[False][1] / medians[True][1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
