"""Shutdown stops background tasks even when one loses its first cancellation."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from services.common.relay import wait_for_signal
from services.common.service_app import stop_background


async def test_a_task_that_swallows_one_cancel_is_still_stopped():
    swallowed = []

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # as a library can, by accident

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    ctx = SimpleNamespace(tasks=[task])
    await asyncio.wait_for(stop_background(ctx), timeout=5)
    assert task.cancelled() and swallowed == [True] and ctx.tasks == []


async def test_wait_for_signal_returns_on_set_or_timeout_and_stays_cancellable():
    signal = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, signal.set)
    await asyncio.wait_for(wait_for_signal(signal, 10), timeout=2)
    signal.clear()
    await wait_for_signal(signal, 0.01)  # the timeout alone
    waiting = asyncio.create_task(wait_for_signal(signal, 10))
    await asyncio.sleep(0.01)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
