"""Run the whole system on this machine: what ``make run`` runs.

    python -m deploy.run_local

One command gives a developer the broker, every service and the gateway (DESIGN.md,
"Processes"), each as its own process, just as they run in production:

1. the dev broker (Tansu) on the address in ``KAFKA_BOOTSTRAP_SERVERS`` (default
   127.0.0.1:9092), reused if something already answers there, and its topics;
2. for each service whose ``services/<name>/app.py`` exists: its migrations
   (``python -m services.common.migrate <name>``), then uvicorn on its port;
3. the gateway, if ``gateway/app.py`` exists, with API keys required, and a development admin
   key made once and kept in ``var/dev-admin-key`` (deploy/local_secrets.py);
4. a wait until every process answers ``GET /healthz`` (deploy/startup_wait.py: as long as
   each is alive and making progress, saying every few seconds whom it waits for), then a
   table of the URLs and the key as ``export CRM_API_KEY=...``.

Services that don't exist yet are listed and skipped, so the command is useful while the
system is being built; with none at all it keeps just the broker running.
It runs until Ctrl-C or SIGTERM (exit 0) or until a process dies (exit 1, naming it);
either way it stops every process it started, and the broker only if it started it.
Each child gets its own process group, so a Ctrl-C reaches this supervisor alone and the
shutdown is orderly: the services and the gateway first, the broker last.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from deploy import local_secrets
from deploy.dev_broker import TOPICS, broker_answers, ensure_topics, start_broker, stop_broker
from deploy.startup_wait import StartupError, first_dead, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Process:
    name: str
    port: int
    package: str  # dotted package holding app.py with create_app()
    migrate: bool  # has its own database and migration history


#: Every process of the system, in start order (the gateway last). Keep in step with DESIGN.md.
PROCESSES = [
    Process("contacts", 8001, "services.contacts", migrate=True),
    Process("orders", 8002, "services.orders", migrate=True),
    Process("interactions", 8003, "services.interactions", migrate=True),
    Process("segmentation", 8004, "services.segmentation", migrate=True),
    Process("gateway", 8000, "gateway", migrate=False),
]


class Shutdown(KeyboardInterrupt):
    """Raised by the SIGINT/SIGTERM/SIGHUP handler.

    A KeyboardInterrupt, so that no `except Exception` eats it and asyncio re-raises it
    from inside a task instead of storing it there (it does so for other BaseExceptions).
    """


def say(message: str) -> None:
    print(f"[run_local] {message}", flush=True)


def app_exists(process: Process) -> bool:
    return (ROOT / process.package.replace(".", "/") / "app.py").is_file()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)
    env.setdefault("PYTHONUNBUFFERED", "1")  # the children's logs show up as they happen
    # Services answer only the gateway even here: a fresh secret per run unless one is given.
    # API keys are required as in production (GATEWAY_AUTH defaults to on).
    env.setdefault("GATEWAY_TOKEN", secrets.token_urlsafe(24))
    return env


def gateway_database_url(env: dict[str, str]) -> str:
    """The gateway's key database as the gateway (cwd ROOT) will find it."""
    return env.get("GATEWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{ROOT / 'var' / 'gateway.db'}"


def start_or_reuse_broker(bootstrap: str) -> subprocess.Popen | None:
    """Return the Tansu started here, or None when a broker already answers."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if broker_answers(host, int(port)):
        say(f"Kafka already answers on {host}:{port}; reusing it")
        return None
    if host not in ("127.0.0.1", "localhost"):
        raise StartupError(f"no Kafka answers on {host}:{port} (KAFKA_BOOTSTRAP_SERVERS)")
    broker = start_broker(int(port), log_path=str(ROOT / "var" / "tansu.log"))
    say(f"started Tansu on 127.0.0.1:{port} (pid {broker.pid}, log var/tansu.log)")
    return broker


def run_migrations(process: Process, env: dict[str, str]) -> None:
    """Bring the service's database to its newest revision before the service starts."""
    if not (ROOT / "services" / "common" / "migrate.py").is_file():
        say(f"WARNING: services/common/migrate.py is missing; {process.name} runs unmigrated")
        return
    say(f"migrating {process.name}")
    # Own process group and an uninterrupted wait: a Ctrl-C now stops everything *after*
    # the migration, instead of killing it half-way (SQLite doesn't roll back all DDL).
    migration = subprocess.Popen(
        [sys.executable, "-m", "services.common.migrate", process.name], cwd=ROOT, env=env, process_group=0
    )
    try:
        migration.wait()
    except Shutdown:
        say(f"letting the migration of {process.name} finish first")
        migration.wait()
        raise
    if migration.returncode != 0:
        raise StartupError(f"migrations of {process.name} failed (exit code {migration.returncode})")


def start_app(process: Process, env: dict[str, str], port: int | None = None,
              log_path: Path | None = None) -> subprocess.Popen:
    """uvicorn in its own process group: a terminal Ctrl-C reaches only this supervisor."""
    command = [
        sys.executable, "-m", "uvicorn", f"{process.package}.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port or process.port),
        "--no-access-log",  # each service logs one JSON line per request itself
    ]
    if log_path is None:
        return subprocess.Popen(command, cwd=ROOT, env=env, process_group=0)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, process_group=0, stdout=log, stderr=subprocess.STDOUT)


def print_table(started: list[Process], missing: list[Process], bootstrap: str, broker_is_ours: bool,
                dev_key: str | None = None) -> None:
    """Where each API and its docs are, printed once everything answers."""
    rows = [("process", "API", "docs")]
    for process in sorted(started, key=lambda p: p.port):
        url = f"http://127.0.0.1:{process.port}"
        rows.append((process.name, url, f"{url}/docs"))
    rows.append(("kafka", bootstrap, "Tansu started here (log var/tansu.log)" if broker_is_ours else "reused"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    print("\nCustomer database is running:", flush=True)
    for name, api, docs in rows:
        print(f"  {name:<{widths[0]}}  {api:<{widths[1]}}  {docs}")
    if missing:
        print(f"  not present yet (no app.py): {', '.join(p.name for p in missing)}")
    if dev_key:
        print(f"\nAPI keys are required. Your development admin key ({local_secrets.DEV_KEY_FILE.relative_to(ROOT)};"
              " paste it into Authorize at /docs):")
        print(f"  export CRM_API_KEY={dev_key}")
    print("Press Ctrl-C to stop everything.\n", flush=True)


def stop_all(children: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every child at once, wait for them together, SIGKILL whatever hangs."""
    for proc in children.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, proc in children.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {STOP_TIMEOUT_S:.0f} s; killing it")
            proc.kill()
            proc.wait()


def _raise_shutdown(signum: int, _frame: object) -> None:
    raise Shutdown(signal.Signals(signum).name)


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_shutdown)
    (ROOT / "var").mkdir(exist_ok=True)
    env = child_env()
    env.setdefault("CONTACTS_SUPPRESSION_SECRET", local_secrets.kept_secret())
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    broker: subprocess.Popen | None = None
    apps: dict[str, subprocess.Popen] = {}
    try:
        broker = start_or_reuse_broker(bootstrap)
        asyncio.run(ensure_topics(bootstrap, TOPICS, partitions=6))
        found = [p for p in PROCESSES if app_exists(p)]
        missing = [p for p in PROCESSES if not app_exists(p)]
        say(f"found: {', '.join(p.name for p in found) or 'nothing'}; "
            f"not present yet: {', '.join(p.name for p in missing) or 'nothing'}")
        for process in found:
            if process.migrate:
                run_migrations(process, env)
        dev_key = None
        if any(process.name == "gateway" for process in found):
            dev_key, made = local_secrets.dev_admin_key(gateway_database_url(env))
            if made:
                say(f"made a development admin key, kept in {local_secrets.DEV_KEY_FILE.relative_to(ROOT)}")
        for process in found:
            apps[process.name] = start_app(process, env)
        watched = dict(apps, **({"kafka (Tansu)": broker} if broker else {}))
        wait_until_healthy(watched, {p.name: p.port for p in found}, report=say)
        if not found:
            say("no service has an app.py yet: only the broker runs")
        print_table(found, missing, bootstrap, broker_is_ours=broker is not None, dev_key=dev_key)
        while not (dead := first_dead(watched)):
            time.sleep(0.5)
        say(f"{dead}; stopping everything")
        return 1
    except Shutdown as stop:
        say(f"{stop} received; stopping everything")
        return 0
    except (StartupError, RuntimeError, KafkaError) as error:
        say(f"could not start: {error}; stopping everything")
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # cleanup is bounded; let it finish
        stop_all(apps)
        if broker is not None:
            stop_broker(broker)
        say("stopped")


if __name__ == "__main__":
    sys.exit(main())
