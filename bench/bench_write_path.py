"""The write path against a baseline app (issue 11): single POSTs per second, direct and through
the gateway, each printed as a ratio beside a minimal FastAPI app doing one INSERT + COMMIT.

In the same run and on the same kind of database: the baseline app (bench/_baseline_app.py) on a
fresh database of its own, then the whole system as `make run` runs it (bench/_support.py
running_system: Tansu, every service and the gateway as processes, API keys on, a rate limit that
refuses nothing). The load comes from another process (this script with --load: aiohttp,
--concurrency keep-alive connections), --warmup s unmeasured then --duration s per target:
baseline, contacts, orders (naming the contacts created by email), interactions, each direct and
through the gateway. Per target: requests/s, p50/p99/max latency, failures by status, CPU per
request per process ("other": the rest of the machine, PostgreSQL included); then the issue's
ratios (direct / baseline, gateway / direct, gateway p50 minus direct p50). About 2.5 minutes.

    .venv/bin/python bench/bench_write_path.py [--duration 10] [--warmup 2] [--concurrency 16]
    .venv/bin/python bench/bench_write_path.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench._support import CpuSampler, Database, LoadRun, measure_on_system, pg_admin  # noqa: E402
from bench.bench_contacts_api import contact_body  # noqa: E402
from bench.bench_orders import order  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.events import rfc3339, utcnow  # noqa: E402

PATHS = {"baseline": "/v1/notes", "contacts": "/v1/contacts", "orders": "/v1/orders",
         "interactions": "/v1/interactions"}
PROCESSES = ("baseline", "contacts", "orders", "interactions", "gateway", "broker", "client", "other")


# ---------------------------------------------------------------------------- the load process

def body(kind: str, i: int, run: str, rng: random.Random) -> dict:
    """Request i of a target: a contact with its own email and phone; an order or an interaction
    naming (by email) one of the contacts the contacts targets created; a baseline note."""
    customer = f"user{i % 1000}.{run}@example.com"
    if kind == "contacts":
        return contact_body(i, run, rng)
    if kind == "orders":
        return order(run, i, email=customer)
    if kind == "interactions":
        return {"customer": {"email": customer}, "type": "call", "channel": "phone", "direction": "inbound",
                "subject": f"bench {i}", "occurred_at": rfc3339(utcnow())}
    return {"email": customer, "text": f"note {i}"}


async def load(spec: dict) -> None:
    """Warm up, say "measuring", run the measured window, print its figures as one JSON line."""
    import aiohttp

    rng, numbers = random.Random(spec["first"]), iter(range(spec["first"], spec["first"] + 10_000_000))
    url = spec["base_url"] + PATHS[spec["kind"]]
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + spec["warmup"]
    stop_at = measure_from + spec["duration"]
    latencies: list[float] = []
    statuses: Counter = Counter()

    async def worker() -> None:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection per worker
        async with aiohttp.ClientSession(connector=connector, headers=spec["headers"],
                                         timeout=aiohttp.ClientTimeout(total=60)) as session:
            while (sent := loop.time()) < stop_at:
                try:
                    async with session.post(url, json=body(spec["kind"], next(numbers), spec["run"], rng)) as answer:
                        await answer.read()
                        status = answer.status
                except aiohttp.ClientError as exc:
                    status = type(exc).__name__
                if measure_from <= (done := loop.time()) <= stop_at:
                    latencies.append(done - sent)
                    statuses[status] += 1

    async def announce() -> None:
        await asyncio.sleep(spec["warmup"])
        print("measuring", flush=True)

    await asyncio.gather(announce(), *(worker() for _ in range(spec["concurrency"])))
    print(json.dumps({"latencies": latencies, "statuses": {str(k): v for k, v in statuses.items()}}), flush=True)


# ---------------------------------------------------------------------------- the measuring side

def drive(label: str, kind: str, base_url: str, headers: dict, sampler: CpuSampler, args, first: int) -> LoadRun:
    """One target's load from a child process; the CPU of every process over its measured window."""
    spec = {"kind": kind, "base_url": base_url, "headers": headers, "run": args.run_id, "first": first,
            "concurrency": args.concurrency, "warmup": args.warmup, "duration": args.duration}
    child = subprocess.Popen([sys.executable, __file__, "--load", json.dumps(spec)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        cpu = CpuSampler({**sampler.pids, "client": child.pid})
        if child.stdout.readline().strip() != "measuring":
            raise RuntimeError(f"the load process for {label} failed")
        before = cpu.snapshot()
        result = json.loads(child.stdout.readline())  # also waits out the requests still in flight
        run = LoadRun(label, result["latencies"], Counter(result["statuses"]), args.duration,
                      CpuSampler.seconds(before, cpu.snapshot()))
    finally:
        child.wait(timeout=30)
    print(report(run), flush=True)
    return run


def answered(run: LoadRun) -> float:
    """Requests per second answered 201: what the ratios compare (a refusal is not a write)."""
    return run.statuses.get("201", 0) / run.wall


def report(run: LoadRun) -> str:
    failures = {k: v for k, v in run.statuses.items() if k != "201"}
    cpu = ", ".join(f"{name} {run.cpu_ms(name):.2f}" for name in PROCESSES if name in run.cpu)
    return (f"{run.label:<24} {run.rps():7.1f}/s  p50 {run.p(50):7.1f}  p99 {run.p(99):7.1f}  "
            f"max {max(run.latencies, default=float('nan')) * 1000:7.1f} ms  failures {failures or 0}\n"
            f"{'':<24} CPU per request (ms): {cpu}")


def baseline_run(args, workdir: Path) -> LoadRun:
    """The baseline app on a fresh database of the system's kind, loaded, stopped and dropped."""
    database = Database(args.database_url, workdir, service="baseline")
    if database.pg_name:
        asyncio.run(pg_admin(args.database_url, f'CREATE DATABASE "{database.pg_name}"'))
    port = free_port()
    app = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench._baseline_app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "BASELINE_DATABASE_URL": database.url}, process_group=0)
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base_url + "/healthz", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or app.poll() is not None:
                    raise RuntimeError("the baseline app did not start")
                time.sleep(0.2)
        return drive("baseline app", "baseline", base_url, {}, CpuSampler({"baseline": app.pid}), args, 0)
    finally:
        app.terminate()
        app.wait(timeout=10)
        database.drop()


def ratios(baseline: LoadRun, runs: dict[tuple[str, str], LoadRun]) -> None:
    print("\nthe issue's figures (targets: direct >= 0.5x baseline, p99 < 100 ms; gateway >= 0.8x direct, "
          "p50 overhead < 3 ms):")
    for service in ("contacts", "orders", "interactions"):
        direct, gateway = runs[service, "direct"], runs[service, "gateway"]
        print(f"  {service:<13} direct / baseline {answered(direct) / answered(baseline):5.2f}x   "
              f"gateway / direct {answered(gateway) / answered(direct):5.2f}x   "
              f"gateway p50 - direct p50 {gateway.p(50) - direct.p(50):6.1f} ms   "
              f"p99 direct {direct.p(99):.0f} ms, gateway {gateway.p(99):.0f} ms")


async def measure(system, key: str, sampler: CpuSampler, args, baseline: LoadRun) -> None:
    """Every service's target, direct then through the gateway; then the ratios."""
    direct = {"X-Gateway-Token": system.token}
    via_gateway = {"Authorization": f"Bearer {key}"}
    runs, first = {}, 0
    for service in ("contacts", "orders", "interactions"):
        for route, url, headers in (("direct", system.url(service), direct),
                                    ("gateway", system.url("gateway"), via_gateway)):
            runs[service, route] = await asyncio.to_thread(
                drive, f"{service} {route}", service, url, headers, sampler, args, first)
            first += 1_000_000  # every contact its own email and phone
    ratios(baseline, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=None, help="a postgresql+asyncpg:// server URL")
    parser.add_argument("--load", default=None, help=argparse.SUPPRESS)  # the load process's spec
    args = parser.parse_args()
    if args.load:
        asyncio.run(load(json.loads(args.load)))
        return 0
    args.run_id = uuid.uuid4().hex[:8]
    print(f"{args.concurrency} connections, {args.warmup:.0f} s warm-up + {args.duration:.0f} s per target", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-write-path-baseline-") as workdir:
        baseline = baseline_run(args, Path(workdir))
    # make run's consumer session timeout, and a rate limit that refuses nothing (bench_system_cost.py)
    env = {"KAFKA_SESSION_TIMEOUT_MS": "10000", "GATEWAY_RATE_PER_SECOND": "100000", "GATEWAY_RATE_BURST": "100000"}
    return measure_on_system(args.database_url, "bench-write-path-",
                             lambda system, key, sampler: measure(system, key, sampler, args, baseline), env=env)

if __name__ == "__main__":
    sys.exit(main())
