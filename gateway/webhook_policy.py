"""What the webhook sender decides, without I/O: which events a subscription takes, when a
failed delivery is tried again, when one is given up on, and when a subscription is disabled.

Retries back off exponentially: `base_s`, then doubling, up to `max_delay_s` between attempts,
with up to 10% of jitter so that endpoints coming back are not hit by every queue at once. A
delivery is tried for `retry_window_s` (24 h by default) after its first attempt: the last retry
is scheduled at the end of the window, never cut short before it. Then it is `failed` and the
customer's next event may go. A subscription that has had failures and no success for
`disable_after_s` (a day by default) is disabled.

Event types are matched exactly, or by a trailing `*` (`crm.contact.*`, or `*` for every type).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

EVENT_TYPE_PATTERN = re.compile(r"^(\*|crm\.[a-z][a-z_]*\.(\*|[a-z][a-z_]*\.v[0-9]+))$")
# Sent by the gateway itself when it disables a subscription (docs/webhooks.md).
DISABLED_EVENT = "crm.webhook.disabled.v1"


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 5.0
    max_delay_s: float = 3600.0
    retry_window_s: float = 24 * 3600.0
    disable_after_s: float = 24 * 3600.0
    jitter: float = 0.1

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds before the next attempt, after `attempts` failed ones (1 or more)."""
        delay = min(self.base_s * 2 ** max(0, attempts - 1), self.max_delay_s)
        return delay * (1 - self.jitter * (rng or random).random())

    def next_attempt(self, *, now: datetime, first_attempt_at: datetime, attempts: int,
                     rng: random.Random | None = None) -> datetime | None:
        """When to try again after a failure, or None: give up (the window is over)."""
        window_end = first_attempt_at + timedelta(seconds=self.retry_window_s)
        if now >= window_end:
            return None
        return min(now + timedelta(seconds=self.delay(attempts, rng)), window_end)

    def should_disable(self, *, now: datetime, failing_since: datetime | None) -> bool:
        return failing_since is not None and now - failing_since >= timedelta(seconds=self.disable_after_s)


def type_matches(patterns: list[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == event_type or (pattern.endswith("*") and event_type.startswith(pattern[:-1])):
            return True
    return False


def check_event_types(patterns: list[str]) -> list[str]:
    """De-duplicated patterns, or ValueError naming the ones that are not event types."""
    cleaned = list(dict.fromkeys(pattern.strip() for pattern in patterns))
    wrong = [pattern for pattern in cleaned if not EVENT_TYPE_PATTERN.match(pattern)]
    if wrong:
        raise ValueError(f"not an event type: {', '.join(wrong)} (write e.g. crm.contact.updated.v1, "
                         "crm.order.* or *)")
    return cleaned
