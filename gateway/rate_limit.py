"""Token buckets per key, in this process's memory. With several gateway replicas each one
limits on its own, so a key's effective limit is its rate times the replicas behind the balancer."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Bucket:
    rate: float  # tokens added per second
    burst: int  # the bucket's size
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_buckets: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, Bucket] = {}

    def acquire(self, key: str, *, rate: float | None = None, burst: int | None = None) -> float:
        """Takes one token: 0.0 when allowed, else the seconds until a token is there."""
        rate = rate or self.rate
        burst = burst or self.burst
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._drop_full(now)
            bucket = self._buckets[key] = Bucket(rate, burst, float(burst), now)
        elif (bucket.rate, bucket.burst) != (rate, burst):  # the key's limits changed
            bucket.rate, bucket.burst = rate, burst
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _drop_full(self, now: float) -> None:
        """Buckets that have refilled completely hold no state worth keeping."""
        self._buckets = {k: b for k, b in self._buckets.items()
                         if b.tokens + (now - b.updated) * b.rate < b.burst}
        while len(self._buckets) >= self.max_buckets:
            self._buckets.pop(next(iter(self._buckets)))


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
