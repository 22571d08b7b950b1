"""Set-up shared by the benchmarks (not a benchmark itself: `make bench` skips `_*.py`)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import httpx
from sqlalchemy.engine import make_url

from services.common.migrate import upgrade

# A service answers only the gateway and refuses to start without GATEWAY_TOKEN (contacts also
# without its suppression secret). A benchmark that calls a service directly plays the gateway.
SERVICE_SECRETS = {"GATEWAY_TOKEN": secrets.token_urlsafe(24), "CONTACTS_SUPPRESSION_SECRET": secrets.token_urlsafe(32)}


def play_the_gateway() -> dict[str, str]:
    """Give this process, and every service it starts from os.environ, the secrets (unless set);
    returns the header the benchmark's clients send, as the gateway does."""
    for name, value in SERVICE_SECRETS.items():
        os.environ.setdefault(name, value)
    return {"X-Gateway-Token": os.environ["GATEWAY_TOKEN"]}


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


def on_fresh_database(server_url: str | None, service: str, prefix: str,
                      measure: Callable[[str, str], Awaitable[None]]) -> None:
    """A benchmark's main for one service's database: `measure(url, kind)` run on a fresh one
    (Database) in a temp dir whose name starts with `prefix`, dropped and removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    database = Database(server_url, workdir, service=service)
    try:
        database.create()
        asyncio.run(measure(database.url, database.kind))
    finally:
        database.drop()
        shutil.rmtree(workdir, ignore_errors=True)


class CpuSampler:
    """CPU seconds used by named processes, by this process (the load generator, "client") and by
    the whole machine, read from /proc (Linux; elsewhere snapshots are empty). `seconds` turns two
    snapshots into CPU seconds per label, plus "other": the rest of the machine's busy time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path("/proc/stat").exists()

    def _process(self, pid: int) -> float:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = raw[raw.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    def snapshot(self) -> dict[str, float]:
        if not self.available:
            return {}
        times = os.times()
        snap = {"client": times.user + times.system}
        snap.update({label: self._process(pid) for label, pid in self.pids.items()})
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        snap["machine_total"] = sum(values) / self.tick  # user nice system idle iowait irq softirq steal
        snap["machine_busy"] = (sum(values) - values[3] - values[4]) / self.tick
        return snap

    @staticmethod
    def seconds(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        """CPU seconds per label between two snapshots, "other" included."""
        if not before or not after:
            return {}
        delta = {k: after[k] - before[k] for k in before}
        ours = sum(v for k, v in delta.items() if not k.startswith("machine"))
        delta["other"] = max(0.0, delta.pop("machine_busy") - ours)
        delta.pop("machine_total")
        return delta


@dataclass
class LoadRun:
    """What `run_load` measured: latencies and answers of the requests that completed in the
    measured time, and the CPU seconds each process of a `CpuSampler` used meanwhile."""

    label: str
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process label

    def rps(self) -> float:
        return len(self.latencies) / self.wall if self.wall else float("nan")

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def errors(self, ok: int) -> int:
        return sum(n for status, n in self.statuses.items() if status != ok)

    def add(self, other: "LoadRun") -> None:
        """Pools another run of the same kind (e.g. a later round) into this one."""
        self.latencies += other.latencies
        self.statuses.update(other.statuses)
        self.wall += other.wall
        self.cpu = {k: self.cpu.get(k, 0.0) + v for k, v in other.cpu.items()}

    def cpu_ms(self, *labels: str) -> float:
        if not self.cpu:
            return float("nan")
        return sum(self.cpu[label] for label in labels) / max(1, len(self.latencies)) * 1000


async def run_load(label: str, base_url: str, headers: dict[str, str], request, *, concurrency: int,
                   warmup: float, duration: float, sampler: CpuSampler) -> LoadRun:
    """`request(client)` from `concurrency` workers for `warmup` s, then `duration` s in which every
    request that completes is counted; each worker on a keep-alive connection of its own (a shared
    httpx pool is scanned on every request, which made the client the bottleneck: bench/README.md).
    `request` is an async callable taking the client and returning its httpx.Response."""
    run = LoadRun(label, wall=duration)
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, headers=headers, limits=one, timeout=30.0, trust_env=False)
               for _ in range(concurrency)]
    measure_from = time.perf_counter() + warmup
    stop_at = measure_from + duration
    snapshots: list[dict[str, float]] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while (sent := time.perf_counter()) < stop_at:
            try:
                status = (await request(client)).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if measure_from <= (done := time.perf_counter()) <= stop_at:
                run.latencies.append(done - sent)
                run.statuses[status] += 1

    async def sample_cpu() -> None:
        for moment in (measure_from, stop_at):
            await asyncio.sleep(max(0.0, moment - time.perf_counter()))
            snapshots.append(sampler.snapshot())

    try:
        await asyncio.gather(sample_cpu(), *(worker(c) for c in clients))
    finally:
        for client in clients:
            await client.aclose()
    run.cpu = CpuSampler.seconds(*snapshots)
    return run


SERVICES = ("contacts", "orders", "interactions", "segmentation")


@contextlib.contextmanager
def running_system(database_url: str | None, workdir: Path, *, env: dict[str, str] | None = None):
    """A dev broker on a free port and the whole system as processes (deploy/local_system.py), API
    keys on, on fresh databases (SQLite files in `workdir`, or throw-away PostgreSQL databases on
    the server `database_url`). Yields (system, admin key, a CpuSampler of every process, the
    database kind); stops and drops everything afterwards, also on Ctrl-C or SIGTERM."""
    from deploy.dev_broker import start_broker, stop_broker
    from deploy.local_system import LocalSystem, free_port

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    databases = {name: Database(database_url, workdir, service=name) for name in SERVICES}
    created: list[Database] = []
    broker = system = None
    try:
        if database_url:
            for database in databases.values():
                created.append(database)
                database.create()
        port = free_port()
        broker = start_broker(port, log_path=str(workdir / "tansu.log"))
        system = LocalSystem(
            workdir=workdir / "system", bootstrap=f"127.0.0.1:{port}",
            database_urls={name: db.url for name, db in databases.items()} if database_url else None,
            env={"GATEWAY_AUTH": "on", **(env or {})})
        kind = ("PostgreSQL, a fresh database per service on " + database_url.rsplit("@", 1)[-1]
                if database_url else "SQLite (WAL), a file per service in a temp dir")
        print(f"Starting Tansu on 127.0.0.1:{port} and the system ({kind}) ...", flush=True)
        system.start()
        key = system.create_key("bench", "admin")
        sampler = CpuSampler({"broker": broker.pid, **{name: proc.pid for name, proc in system.children.items()}})
        yield system, key, sampler, kind
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        if system is not None:
            system.stop()
        if broker is not None:
            stop_broker(broker)
        for database in created:
            database.drop()
        signal.signal(signal.SIGINT, signal.default_int_handler)


def measure_on_system(database_url: str | None, prefix: str,
                      measure: Callable[[Any, str, "CpuSampler"], Awaitable[None]], *,
                      env: dict[str, str] | None = None) -> int:
    """A benchmark's main: `measure(system, admin key, sampler)` against a fresh whole system
    (running_system) in a temp dir whose name starts with `prefix`; the exit code (130 on Ctrl-C)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with running_system(database_url, workdir, env=env) as (system, key, sampler, kind):
            print(f"database: {kind}", flush=True)
            asyncio.run(measure(system, key, sampler))
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
