"""The sender's decisions without I/O: the retry schedule, giving up, disabling, event types."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from gateway.webhook_policy import RetryPolicy, check_event_types, type_matches

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)


def test_the_schedule_doubles_up_to_an_hour_and_keeps_trying_for_the_whole_window():
    policy, rng = RetryPolicy(jitter=0.0), random.Random(1)
    now, attempts, gaps = T0, 1, []
    while (retry := policy.next_attempt(now=now, first_attempt_at=T0, attempts=attempts, rng=rng)) is not None:
        gaps.append((retry - now).total_seconds())
        now, attempts = retry, attempts + 1
    assert gaps[:5] == [5, 10, 20, 40, 80] and max(gaps) == 3600
    assert now == T0 + timedelta(hours=24)  # the last attempt at the end of the window, not before
    assert policy.next_attempt(now=now, first_attempt_at=T0, attempts=attempts) is None


def test_jitter_only_shortens():
    delays = [RetryPolicy().delay(3, random.Random(seed)) for seed in range(50)]
    assert all(18 <= d <= 20 for d in delays) and len(set(delays)) > 1


def test_disabled_after_a_day_of_failures_only():
    policy = RetryPolicy()
    assert not policy.should_disable(now=T0 + timedelta(hours=30), failing_since=None)
    assert not policy.should_disable(now=T0 + timedelta(hours=23, minutes=59), failing_since=T0)
    assert policy.should_disable(now=T0 + timedelta(hours=24), failing_since=T0)


def test_event_types():
    assert type_matches(["crm.contact.*"], "crm.contact.updated.v1")
    assert not type_matches(["crm.contact.*"], "crm.order.created.v1")
    assert type_matches(["*"], "crm.webhook.disabled.v1")
    assert type_matches(["crm.order.created.v1"], "crm.order.created.v1")
    assert check_event_types(["*", "*", "crm.order.*"]) == ["*", "crm.order.*"]
    with pytest.raises(ValueError, match="contact.updated"):
        check_event_types(["contact.updated"])
