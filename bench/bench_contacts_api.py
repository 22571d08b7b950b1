"""Contacts created per second through the HTTP API, with latency; then reads and searches.

Everything runs for real: a dev broker (Tansu) on a free port, the contacts service as a
uvicorn subprocess on a fresh, migrated database (SQLite in a temp dir by default, or a
throw-away PostgreSQL database with --database-url), and httpx clients driving it at a fixed
concurrency, each worker on a keep-alive connection of its own. It prints its figures; it never passes or fails.

    .venv/bin/python bench/bench_contacts_api.py [--requests 5000] [--concurrency 32]
    .venv/bin/python bench/bench_contacts_api.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

The client shares the machine's cores with the service and the broker, so the figures are
what one box does end to end, not the service's ceiling; each phase also prints the cores used
by the service, the client, the broker (and PostgreSQL) and by other processes.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
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
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench._support import Database, percentile, play_the_gateway  # noqa: E402
from deploy.dev_broker import ensure_topics, start_broker, stop_broker  # noqa: E402
from deploy.local_system import free_port  # noqa: E402
from services.common.events import topic_for  # noqa: E402

GIVEN_NAMES = ["محمد", "علی", "حسین", "رضا", "مهدی", "زهرا", "فاطمه", "مریم", "سارا", "نرگس",
               "امیرحسین", "کیان", "یاسمن", "نازنین", "پریسا", "آرش", "بهاره", "سپیده", "کوروش", "شیرین"]
FAMILY_NAMES = ["احمدی", "محمدی", "حسینی", "رضایی", "کریمی", "موسوی", "جعفری", "قاسمی", "صادقی", "کاظمی",
                "رحیمی", "یزدانی", "شریفی", "نوروزی", "اکبری", "تهرانی", "کرمانی", "شیرازی", "ملکی", "فرهادی"]
# Searched as typed by a user: some in Arabic letter forms (ي, ك), which must still match.
SEARCH_FRAGMENTS = ["احمد", "كريمي", "حسيني", "یزدان", "شیراز", "نوروز", "فرهاد", "ملكي", "زهرا رضا", "کوروش"]
PERSIAN_DIGITS = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
AS_GATEWAY = play_the_gateway()


# ---------------------------------------------------------------------------- set-up helpers

def start_service(port: int, env_overrides: dict[str, str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, **env_overrides}
    command = [sys.executable, "-m", "uvicorn", "services.contacts.app:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
               # longer than any pause between phases, so no pooled connection is closed under a request
               "--timeout-keep-alive", "120"]
    with open(log_path, "wb") as log:
        # Its own process group: Ctrl-C reaches only this script, which stops it in order.
        return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, process_group=0)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_healthy(base_url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base_url, headers=AS_GATEWAY, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {proc.returncode}; log:\n{log_tail(log_path)}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the service did not answer /healthz within {timeout:.0f} s; log:\n{log_tail(log_path)}")


# ---------------------------------------------------------------------------- load and figures

def contact_body(i: int, run: str, rng: random.Random) -> dict:
    phone = f"0912{i:07d}"
    if i % 3 == 0:
        phone = phone.translate(PERSIAN_DIGITS)  # as typed on a Persian keyboard
    return {
        "given_name": rng.choice(GIVEN_NAMES),
        "family_name": rng.choice(FAMILY_NAMES),
        "emails": [f"user{i}.{run}@example.com"],
        "phones": [phone],
        "tags": ["bench", rng.choice(["vip", "newsletter", "wholesale"])],
        "lifecycle_stage": rng.choice(["lead", "prospect", "customer"]),
        "source": "web_form",
        "attributes": {"loyalty_points": rng.randint(0, 5000)},
        "consent": {"email": {"status": "granted", "source": "signup form"}},
    }


class CpuMeter:
    """CPU time of the client (this process), the service, the broker, PostgreSQL's processes and
    the whole machine, from /proc (Linux); elsewhere it reports nothing."""

    def __init__(self, service_pid: int, broker_pid: int, postgres: bool) -> None:
        self.pids = {"service": service_pid, "broker": broker_pid}
        self.postgres = postgres
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = Path("/proc/stat").exists()

    def _proc(self, pid: int | str) -> tuple[str, float, float, int]:
        """(name, own CPU seconds, CPU seconds of its exited children, parent pid)."""
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return "", 0.0, 0.0, 0
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        return (name, (int(fields[11]) + int(fields[12])) / self.tick,
                (int(fields[13]) + int(fields[14])) / self.tick, int(fields[1]))

    def _postgres(self) -> float:
        """Live server processes plus the backends that already exited (the postmaster's children)."""
        procs = {int(p): self._proc(p) for p in os.listdir("/proc") if p.isdigit()}
        total = 0.0
        for pid, (name, own, children, parent) in procs.items():
            if name.startswith("postgres"):
                total += own
                if not procs.get(parent, ("",))[0].startswith("postgres"):
                    total += children  # the postmaster: its exited backends
        return total

    def snapshot(self) -> dict[str, float]:
        if not self.available:
            return {}
        times = os.times()
        snap = {"client": times.user + times.system}
        for label, pid in self.pids.items():
            snap[label] = self._proc(pid)[1]
        if self.postgres:
            snap["postgres"] = self._postgres()
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in cpu[:8]]  # user nice system idle iowait irq softirq steal
        snap["machine_total"] = sum(values) / self.tick
        snap["machine_busy"] = (sum(values) - values[3] - values[4]) / self.tick
        return snap

    @staticmethod
    def describe(before: dict[str, float], after: dict[str, float], wall: float, requests: int) -> str:
        if not before or wall <= 0:
            return ""
        delta = {k: after[k] - before[k] for k in before}
        ours = sum(v for k, v in delta.items() if not k.startswith("machine"))
        other = max(0.0, delta["machine_busy"] - ours)
        cores = delta["machine_total"] / wall
        parts = [f"{k} {delta[k] / wall:.2f}" for k in ("service", "client", "broker", "postgres") if k in delta]
        per_request = f"service {delta['service'] / max(1, requests) * 1000:.2f} ms CPU/request"
        return (f"cores busy: {', '.join(parts)}, other processes {other / wall:.2f} "
                f"(of {cores:.0f}); {per_request}")


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()
        self.wall = 0.0
        self.created_ids: list[str] = []
        self.cpu = ""

    def record(self, started: float, status: int | None, error: str | None = None) -> None:
        self.latencies.append(time.perf_counter() - started)
        if error:
            self.errors[error] += 1
        else:
            self.statuses[status] += 1

    def failures(self, ok: int) -> int:
        return sum(self.errors.values()) + sum(n for s, n in self.statuses.items() if s != ok)


async def drive(clients: list[httpx.AsyncClient], phase: Phase, count: int, concurrency: int, request,
                meter: CpuMeter | None = None) -> None:
    """`count` calls of `request(client, i)` (which returns a Response), `concurrency` at a time,
    each worker on a keep-alive connection of its own."""
    counter = iter(range(count))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            started = time.perf_counter()
            try:
                response = await request(client, i)
            except httpx.HTTPError as exc:
                phase.record(started, None, type(exc).__name__)
                continue
            phase.record(started, response.status_code)
            if phase.name == "create" and response.status_code == 201:
                phase.created_ids.append(response.json()["id"])

    before = meter.snapshot() if meter else {}
    started = time.perf_counter()
    await asyncio.gather(*(worker(clients[k]) for k in range(concurrency)))
    phase.wall = time.perf_counter() - started
    if meter:
        phase.cpu = meter.describe(before, meter.snapshot(), phase.wall, count)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def report_phase(phase: Phase, ok: int, concurrency: int) -> None:
    n = len(phase.latencies)
    print(f"  {phase.name:<8} {n:>6} requests in {phase.wall:6.2f} s = {n / phase.wall:8.1f} /s  "
          f"(concurrency {concurrency})")
    print(f"           p50 {ms(percentile(phase.latencies, 50))}   p99 {ms(percentile(phase.latencies, 99))}   "
          f"max {ms(max(phase.latencies, default=float('nan')))}   "
          f"errors {phase.failures(ok)}")
    unexpected = {s: c for s, c in phase.statuses.items() if s != ok}
    if unexpected or phase.errors:
        print(f"           unexpected answers: {dict(unexpected)} {dict(phase.errors)}")
    if phase.cpu:
        print(f"           {phase.cpu}")


def parse_metrics(text: str) -> dict:
    """{'name': value} for plain samples; histograms as {'name': {'count','sum','buckets'}}; labels folded."""
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.type == "histogram":
                entry = out.setdefault((family.name, tuple(sorted((k, v) for k, v in sample.labels.items()
                                                                  if k != "le"))),
                                       {"count": 0.0, "sum": 0.0, "buckets": []})
                if sample.name.endswith("_count"):
                    entry["count"] = sample.value
                elif sample.name.endswith("_sum"):
                    entry["sum"] = sample.value
                elif sample.name.endswith("_bucket"):
                    entry["buckets"].append((float(sample.labels["le"]), sample.value))
            else:
                out[sample.name] = sample.value
    return out


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> str:
    """The upper bound of the histogram bucket holding quantile q (Prometheus-style, coarse)."""
    buckets = sorted(buckets)
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "n/a"
    for bound, cumulative in buckets:
        if cumulative >= q * total:
            return "> 10 s" if bound == float("inf") else f"<= {bound * 1000:g} ms"
    return "n/a"


def report_outbox(metrics: dict, label: str) -> None:
    delay = metrics.get(("crm_outbox_commit_to_publish_seconds", ()), {"count": 0, "sum": 0, "buckets": []})
    mean = delay["sum"] / delay["count"] if delay["count"] else float("nan")
    print(f"  {label}: crm_outbox_pending_events {metrics.get('crm_outbox_pending_events', float('nan')):.0f}, "
          f"oldest pending {metrics.get('crm_outbox_oldest_pending_age_seconds', float('nan')):.2f} s, "
          f"published {metrics.get('crm_outbox_published_total', float('nan')):.0f}, "
          f"publish failures {metrics.get('crm_outbox_publish_failures_total', float('nan')):.0f}")
    print(f"    crm_outbox_commit_to_publish_seconds: count {delay['count']:.0f}, sum {delay['sum']:.2f} s, "
          f"mean {ms(mean).strip()}, p50 {bucket_quantile(delay['buckets'], 0.5)}, "
          f"p99 {bucket_quantile(delay['buckets'], 0.99)}")


def report_server_latency(metrics: dict) -> None:
    for (name, labels), entry in sorted((k, v) for k, v in metrics.items()
                                        if isinstance(k, tuple) and k[0] == "crm_http_request_seconds"):
        label = dict(labels)
        if not entry["count"] or label.get("route", "").startswith(("/metrics", "/healthz")):
            continue
        print(f"    {label.get('method', ''):<5} {label.get('route', ''):<28} count {entry['count']:>7.0f}  "
              f"mean {ms(entry['sum'] / entry['count'])}  p50 {bucket_quantile(entry['buckets'], 0.5)}, "
              f"p99 {bucket_quantile(entry['buckets'], 0.99)}")


async def wait_outbox_drained(client: httpx.AsyncClient, expected: int, timeout: float = 30.0) -> tuple[dict, float]:
    started = time.perf_counter()
    metrics = parse_metrics((await client.get("/metrics")).text)
    while time.perf_counter() - started < timeout:
        if metrics.get("crm_outbox_published_total", 0) >= expected and metrics.get("crm_outbox_pending_events", 1) == 0:
            break
        await asyncio.sleep(0.05)
        metrics = parse_metrics((await client.get("/metrics")).text)
    return metrics, time.perf_counter() - started


async def run(args, base_url: str, db_kind: str, meter: CpuMeter) -> None:
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:6]
    # One client (and so one keep-alive connection) per worker: httpcore scans its whole pool on
    # every request, which costs more than the request itself once the pool has dozens of connections.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, headers=AS_GATEWAY, limits=one, timeout=60.0)
               for _ in range(max(args.concurrency, args.search_concurrency))]
    try:
        client = clients[0]
        bodies = [contact_body(i, run_id, rng) for i in range(args.warmup + args.requests)]

        warm = Phase("create")
        if args.warmup:
            await drive(clients, warm, args.warmup, args.concurrency,
                        lambda c, i: c.post("/v1/contacts", json=bodies[i]))
            print(f"  warm-up: {args.warmup} creates (not counted), {warm.failures(201)} failed", flush=True)

        creates = Phase("create")
        await drive(clients, creates, args.requests, args.concurrency,
                    lambda c, i: c.post("/v1/contacts", json=bodies[args.warmup + i]), meter)
        after_creates = parse_metrics((await client.get("/metrics")).text)
        ids = creates.created_ids
        if not ids:
            raise RuntimeError(f"no contact was created: {dict(creates.statuses)} {dict(creates.errors)}")
        print(f"  creates done in {creates.wall:.1f} s", flush=True)

        reads = Phase("read")
        read_ids = [rng.choice(ids) for _ in range(args.reads)]
        await drive(clients, reads, args.reads, args.concurrency,
                    lambda c, i: c.get(f"/v1/contacts/{read_ids[i]}"), meter)
        print(f"  reads done in {reads.wall:.1f} s", flush=True)

        searches = Phase("search")
        hits: list[int] = []

        async def search(c, i):
            response = await c.get("/v1/contacts", params={"q": SEARCH_FRAGMENTS[i % len(SEARCH_FRAGMENTS)],
                                                          "limit": args.search_limit})
            if response.status_code == 200:
                hits.append(len(response.json()["items"]))
            return response

        await drive(clients, searches, args.searches, args.search_concurrency, search, meter)

        # One event per contact created (warm-up included).
        final, drain_wait = await wait_outbox_drained(client, expected=len(warm.created_ids) + len(ids))
    finally:
        for c in clients:
            await c.aclose()

    total_rows = len(warm.created_ids) + len(ids)
    print()
    print("=" * 78)
    print("Contacts API benchmark")
    print(f"  database     {db_kind}")
    print("  service      uvicorn, 1 worker, LOG_REQUESTS=false, no access log; relay in-process")
    print(f"  broker       Tansu (dev broker), topic {topic_for('contacts')}, 6 partitions")
    print(f"  client       httpx.AsyncClient, {args.concurrency} workers each on its own keep-alive connection")
    print(f"  machine      {os.cpu_count()} cores shared by client, service, broker"
          f"{' and PostgreSQL' if meter.postgres else ''}; load average at start {args.loadavg}, at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  rows         {args.requests} creates measured after {args.warmup} warm-up; "
          f"base of {total_rows} contacts for reads and searches")
    print("-" * 78)
    report_phase(creates, 201, args.concurrency)
    report_phase(reads, 200, args.concurrency)
    report_phase(searches, 200, args.search_concurrency)
    if hits:
        print(f"           search: page of {args.search_limit}, mean {sum(hits) / len(hits):.1f} hits, "
              f"{sum(1 for h in hits if h == 0)} found nothing (queries include Arabic letter forms ي/ك)")
    print("-" * 78)
    print("Server-side request time (crm_http_request_seconds, whole run incl. warm-up):")
    report_server_latency(final)
    print("Outbox (the service's /metrics):")
    report_outbox(after_creates, "right after the last create")
    report_outbox(final, f"at the end (drained {drain_wait:.2f} s later)")
    print("=" * 78)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="contacts to create and time (default 5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight for creates and reads (default 32)")
    parser.add_argument("--warmup", type=int, default=100, help="creates before timing starts (default 100)")
    parser.add_argument("--reads", type=int, default=2000, help="GET /v1/contacts/{id} to time (default 2000)")
    parser.add_argument("--searches", type=int, default=300, help="GET /v1/contacts?q= to time (default 300)")
    parser.add_argument("--search-concurrency", type=int, default=4,
                        help="searches in flight (default 4: a search scans the table, so high concurrency "
                             "only measures queueing)")
    parser.add_argument("--search-limit", type=int, default=50, help="page size of a search (default 50)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (postgresql+asyncpg://user@host:port/db); a fresh database "
                             "bench_<random> is created there and dropped after. Default: SQLite in a temp dir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (service and broker logs)")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.search_concurrency) < 1 or min(args.reads, args.searches, args.warmup) < 0:
        parser.error("counts must be positive")

    # Ctrl-C and SIGTERM take the same way out, even when started in the background (where the
    # shell ignores SIGINT), so the subprocesses and the database are always cleaned up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args.loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    workdir = Path(tempfile.mkdtemp(prefix="bench-contacts-api-"))
    database = Database(args.database_url, workdir)
    broker = service = None
    created = False
    try:
        print(f"Migrating a fresh contacts database: {database.kind} ...", flush=True)
        database.create()
        created = True
        broker_port, service_port = free_port(), free_port()
        bootstrap = f"127.0.0.1:{broker_port}"
        broker = start_broker(broker_port, log_path=str(workdir / "tansu.log"))
        asyncio.run(ensure_topics(bootstrap, [topic_for("contacts")], 6))
        log_path = workdir / "contacts-service.log"
        service = start_service(service_port, {
            "CONTACTS_DATABASE_URL": database.url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LOG_REQUESTS": "false", "IMPORT_DIR": str(workdir / "imports"),
        }, log_path)
        base_url = f"http://127.0.0.1:{service_port}"
        asyncio.run(wait_healthy(base_url, service, log_path))
        print(f"Broker on {bootstrap}, contacts service on {base_url}; running "
              f"{args.warmup}+{args.requests} creates, {args.reads} reads, {args.searches} searches ...", flush=True)
        meter = CpuMeter(service.pid, broker.pid, postgres=database.pg_name is not None)
        asyncio.run(run(args, base_url, database.kind, meter))
        if service.poll() is not None:
            print(f"the service exited early (code {service.returncode}); log:\n{log_tail(log_path)}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        stop_process(service)
        if broker is not None:
            stop_broker(broker)
        if created or database.pg_name:
            database.drop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
