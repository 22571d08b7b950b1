"""`make run` waits for each process as long as it is alive and making progress, says whom it
waits for, and gives up only on one that died, one that is stuck, or at the overall bound."""
from __future__ import annotations

import subprocess
import sys

import pytest

from deploy.local_system import free_port
from deploy.startup_wait import StartupError, wait_until_healthy

# A process that works (CPU) for `busy` seconds, then serves /healthz on `port`.
SLOW_STARTER = """
import http.server, sys, time
busy, port = float(sys.argv[1]), int(sys.argv[2])
end = time.monotonic() + busy
while time.monotonic() < end:
    sum(range(10_000))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, *argv]))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_slow_process_still_working_is_waited_for_and_reported(processes):
    port = free_port()
    slow = processes("-c", SLOW_STARTER, "2.5", str(port))
    lines: list[str] = []
    # Its start-up takes longer than it may stay idle: only its CPU time shows it is alive.
    wait_until_healthy({"contacts": slow}, {"contacts": port}, timeout=30, stall_s=1.0, report_every_s=0.5,
                       report=lines.append)
    assert lines and all("waiting for contacts to answer /healthz" in line for line in lines)


def test_a_process_that_is_alive_but_stuck_is_named(processes):
    stuck = processes("-c", "import time; time.sleep(60)")
    with pytest.raises(StartupError, match=r"orders is running but has made no progress for \d+ s"):
        wait_until_healthy({"orders": stuck}, {"orders": free_port()}, timeout=30, stall_s=1.0)


def test_a_process_that_died_is_named_with_its_exit_code(processes):
    dead = processes("-c", "import sys; sys.exit(3)")
    dead.wait()
    with pytest.raises(StartupError, match="gateway exited with code 3"):
        wait_until_healthy({"gateway": dead}, {"gateway": free_port()}, timeout=30)


def test_the_overall_bound_names_who_did_not_answer(processes):
    port = free_port()
    busy = processes("-c", SLOW_STARTER, "30", str(port))
    with pytest.raises(StartupError, match="no answer on /healthz within 1 s from segmentation"):
        wait_until_healthy({"segmentation": busy}, {"segmentation": port}, timeout=1.0, stall_s=10)
