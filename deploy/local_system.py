"""The whole system as real processes on free ports: what the end-to-end tests and the gateway
benchmark start. ``make run`` (run_local.py) is the same processes on the fixed ports.

    system = LocalSystem(workdir=..., bootstrap="127.0.0.1:9092")
    system.start()                      # migrate, start every service and the gateway, wait
    system.url("gateway")               # http://127.0.0.1:<port>
    system.kill("orders"); system.start_process("orders")   # a service killed and back
    system.stop()

Each process logs to ``<workdir>/<name>.log``. Topics carry ``topic_prefix`` so several systems
can share one broker; the services run with the same GATEWAY_TOKEN as their gateway, so they
answer only it; the gateway requires API keys (``create_key``), as ``make run`` does.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from deploy.dev_broker import TOPICS, ensure_topics
from deploy.run_local import PROCESSES, ROOT, Process, child_env, run_migrations, start_app, stop_all
from deploy.startup_wait import wait_until_healthy

# Five Python processes importing at once on a busy 2-core machine can take a while.
START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A port nothing listens on now (the OS picks it): for brokers and apps started by tests and benchmarks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalSystem:
    def __init__(self, *, workdir: Path, bootstrap: str, database_urls: dict[str, str] | None = None,
                 topic_prefix: str = "", env: dict[str, str] | None = None) -> None:
        """`database_urls`: per service, an already migrated database; the others get a SQLite
        file in `workdir`, migrated on start."""
        self.workdir = Path(workdir)
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.processes: dict[str, Process] = {p.name: p for p in PROCESSES}
        self.ports = {name: free_port() for name in self.processes}
        self.token = secrets.token_urlsafe(24)
        self.suppression_secret = secrets.token_urlsafe(32)
        given = database_urls or {}
        self.database_urls = {p.name: given.get(p.name) or f"sqlite+aiosqlite:///{self.workdir / (p.name + '.db')}"
                              for p in PROCESSES if p.migrate}
        self.to_migrate = [name for name in self.database_urls if name not in given]
        self.env = self._environment(env or {})
        self.children: dict[str, subprocess.Popen] = {}

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = child_env()
        env.update({
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            # Tansu finishes a group join after about half the session timeout: keep start-up short.
            "KAFKA_SESSION_TIMEOUT_MS": "1500", "GATEWAY_TOKEN": self.token,
            "CONTACTS_SUPPRESSION_SECRET": self.suppression_secret,
            "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{self.workdir / 'gateway.db'}",
            "IMPORT_DIR": str(self.workdir / "imports"),
        })
        for name, url in self.database_urls.items():
            env[f"{name.upper()}_DATABASE_URL"] = url
            env[f"{name.upper()}_URL"] = self.url(name)
        env.update(extra)
        return env

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        asyncio.run(ensure_topics(self.bootstrap, [self.topic(t) for t in TOPICS], partitions=6))
        for name in self.to_migrate:
            run_migrations(self.processes[name], self.env)
        try:
            for name in self.processes:
                self._spawn(name)
            wait_until_healthy(self.children, dict(self.ports), timeout=START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str) -> None:
        self.children[name] = start_app(self.processes[name], self.env, port=self.ports[name],
                                        log_path=self.workdir / f"{name}.log")

    def start_process(self, name: str) -> None:
        """Start one process again (after kill) and wait until it answers."""
        self._spawn(name)
        wait_until_healthy({name: self.children[name]}, {name: self.ports[name]}, timeout=START_TIMEOUT_S)

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown, no flush; what it had not committed is gone, as in a crash."""
        process = self.children.pop(name)
        process.kill()
        process.wait()

    def stop(self) -> None:
        stop_all(self.children)
        self.children.clear()

    def create_key(self, name: str, scopes: str, **limits: float) -> str:
        """An API key made with the gateway's own CLI; its secret."""
        extra = [arg for option, value in limits.items() for arg in (f"--{option}", str(value))]
        result = subprocess.run([sys.executable, "-m", "gateway.keys", "create", "--name", name, "--scopes", scopes,
                                 *extra], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True)
        return result.stdout.strip().splitlines()[-1].strip()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self) -> "LocalSystem":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
