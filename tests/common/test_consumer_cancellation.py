"""A consumer whose topics do not exist yet (the dev broker creates them on the first metadata
request, so they are being created while it joins its group) stops when cancelled, and leaves
no aiokafka task running behind it.

The hang this guards against (seen in a CI run): cancel_and_wait cancels again every 0.2 s; a repeat
landing inside AIOKafkaConsumer.stop(), which waits for the group join in flight, cut the stop
short, and the consumer's fetcher, metadata task and connections and the dead-letter producer
ran on as orphans. Only the event loop's teardown cancelled them, once each, and aiokafka's
fetcher can swallow that one cancel (it awaits its own cancelled fetch tasks under
`contextlib.suppress(CancelledError)`) and then wait for an assignment that never comes."""
from __future__ import annotations

import asyncio
import signal
import time

import pytest

from deploy.local_system import free_port
from deploy.run_local import PROCESSES, child_env, start_app
from deploy.startup_wait import wait_until_healthy
from services.common.consumer import EventConsumer
from services.common.consumer_apply import ConsumerSpec, Subscription
from services.common.kafka import make_consumer, make_producer
from services.common.metrics import ServiceMetrics
from services.common.service_app import build_context, cancel_and_wait
from services.contacts.models import kernel
from tests.conftest import TEST_GATEWAY_TOKEN, TEST_SUPPRESSION_SECRET, service_settings

pytestmark = pytest.mark.broker


def aiokafka_tasks() -> list[str]:
    """The running tasks whose coroutine is aiokafka's own (fetcher, sender, connections...)."""
    names = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and "/aiokafka/" in code.co_filename:
            names.append(task.get_coro().__qualname__)
    return sorted(names)


async def no_apply(_session, _ctx, _poll) -> None:
    raise AssertionError("no event exists to be handled")


# While bootstrapping, while waiting for the topics' metadata, and in the group join (which the
# dev broker completes after half the session timeout, 0.75 s here, again after each topic appears).
@pytest.mark.parametrize("cancel_after_s", [0.05, 0.4, 0.9, 1.4])
async def test_a_consumer_of_topics_being_created_stops_and_leaves_nothing_running(broker, unique, cancel_after_s):
    topics = [f"missing{unique}.a", f"missing{unique}.b"]
    settings = service_settings("contacts", "sqlite+aiosqlite://", broker["bootstrap"])
    subscription = Subscription(consumers=(ConsumerSpec(f"g{unique}", tuple(topics)),), apply=no_apply)
    ctx = build_context(settings, kernel, ServiceMetrics(f"cancel{unique}"), subscription=subscription)
    runner = EventConsumer(ctx=ctx, subscription=subscription,
                           consumer_factory=lambda: make_consumer(settings, *topics, group_id=f"g{unique}"),
                           producer_factory=lambda: make_producer(settings))
    before = set(aiokafka_tasks())
    assert not before, f"another test left aiokafka tasks running: {before}"
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(cancel_after_s)

    still_running = await cancel_and_wait([task])  # what a service's shutdown does

    await ctx.dispose()
    assert still_running == [] and task.cancelled()
    assert aiokafka_tasks() == [], "the consumer's clients were not stopped to the end"


def test_a_service_whose_consumers_join_missing_topics_stops_within_10_s_of_sigterm(broker, database_factory,
                                                                                  tmp_path, unique):
    """The contacts service follows three topics; here none exists when it starts. SIGTERM comes
    as soon as it answers, while its consumers are still joining their groups."""
    database = asyncio.run(database_factory.fresh("contacts"))
    env = child_env() | {"KAFKA_BOOTSTRAP_SERVERS": broker["bootstrap"], "KAFKA_TOPIC_PREFIX": f"sigterm{unique}.",
                         "CONTACTS_DATABASE_URL": database, "KAFKA_SESSION_TIMEOUT_MS": "10000",
                         "GATEWAY_TOKEN": TEST_GATEWAY_TOKEN, "CONTACTS_SUPPRESSION_SECRET": TEST_SUPPRESSION_SECRET}
    port, log = free_port(), tmp_path / "contacts.log"
    process = start_app(PROCESSES[0], env, port=port, log_path=log)
    try:
        wait_until_healthy({"contacts": process}, {"contacts": port}, timeout=60)
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.wait(timeout=15)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    # uvicorn shuts down, then raises the signal it caught again: -SIGTERM is its clean exit.
    assert process.returncode == -signal.SIGTERM and "Application shutdown complete" in text, text[-3000:]
    assert took < 10, f"stopped {took:.1f} s after SIGTERM"
    assert "still running at shutdown" not in text and "did not stop" not in text
