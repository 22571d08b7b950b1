"""Waiting for started processes to answer ``GET /healthz``, as long as they are alive and
making progress: on a busy machine five Python processes importing at once can take a minute,
and giving up on a process that is still starting only makes the user start again.

A process makes progress while it uses CPU time (importing, migrating, starting) or its port
starts to accept connections. The wait gives up only when a process died, when one has made no
progress for ``stall_s`` (stuck, e.g. waiting on a database that never answers), or at the
generous overall ``timeout``; each names the process. Every ``report_every_s`` it says whom it
is still waiting for."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from typing import Callable

import httpx

HEALTH_TIMEOUT_S = 300.0
STALL_S = 60.0
REPORT_EVERY_S = 5.0
POLL_S = 0.2


class StartupError(Exception):
    """The system could not be brought up; the message says why."""


def first_dead(children: dict[str, subprocess.Popen]) -> str | None:
    """Name the first child that has exited, if any: the whole system stops with it."""
    for name, proc in children.items():
        if proc.poll() is not None:
            return f"{name} exited with code {proc.returncode}"
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Progress:
    """When each process last showed a sign of life beyond merely existing."""

    def __init__(self, children: dict[str, subprocess.Popen], ports: dict[str, int]) -> None:
        self.children, self.ports = children, ports
        now = time.monotonic()
        self.last_seen = {name: now for name in ports}
        self.cpu = {name: None for name in ports}
        self.listening = {name: False for name in ports}

    def check(self, name: str) -> float:
        """Seconds since `name` last made progress."""
        now = time.monotonic()
        process = self.children.get(name)
        cpu = cpu_seconds(process.pid) if process is not None else None
        listening = self.listening[name] or port_accepts(self.ports[name])
        if cpu is None and process is not None and self.cpu[name] is None:
            self.last_seen[name] = now  # no /proc here: alive is all we can know
        elif (cpu is not None and cpu != self.cpu[name]) or listening != self.listening[name]:
            self.last_seen[name] = now
        self.cpu[name], self.listening[name] = cpu, listening
        return now - self.last_seen[name]


def wait_until_healthy(children: dict[str, subprocess.Popen], ports: dict[str, int], *,
                       timeout: float = HEALTH_TIMEOUT_S, stall_s: float = STALL_S,
                       report_every_s: float = REPORT_EVERY_S, report: Callable[[str], None] | None = None) -> None:
    """Poll every app's /healthz until all answer 200 (see the module's docstring)."""
    pending = set(ports)
    started = time.monotonic()
    next_report = started + report_every_s
    progress = Progress(children, ports)
    with httpx.Client(timeout=1.0, trust_env=False) as client:  # no proxy for 127.0.0.1
        while pending:
            if dead := first_dead(children):
                raise StartupError(dead)
            for name in sorted(pending):
                try:
                    if client.get(f"http://127.0.0.1:{ports[name]}/healthz").status_code == 200:
                        pending.discard(name)
                        continue
                except httpx.HTTPError:
                    pass
                idle = progress.check(name)
                if idle > stall_s:
                    raise StartupError(f"{name} is running but has made no progress for {idle:.0f} s "
                                       "(no CPU time used, no answer on /healthz)")
            waited = time.monotonic() - started
            if pending and waited > timeout:
                raise StartupError(f"no answer on /healthz within {timeout:.0f} s from {', '.join(sorted(pending))}")
            if pending and report is not None and time.monotonic() >= next_report:
                report(f"waiting for {', '.join(sorted(pending))} to answer /healthz ({waited:.0f} s; "
                       f"still starting, up to {timeout:.0f} s)")
                next_report += report_every_s
            time.sleep(POLL_S)
