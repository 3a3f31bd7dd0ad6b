"""Per-key token buckets (agents, peers), with an injected clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coral.protocol.errors import ResourceExhausted


class RateLimited(ResourceExhausted):
    """Too many requests from one agent or peer; retry later."""

    reason = "rate_limited"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Allows ``rate`` events per second per key, with bursts up to ``burst``.

    Memory is bounded: at most ``max_keys`` buckets; the least recently
    refilled full buckets are dropped first (a full bucket carries no state).
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], max_keys: int = 100_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: float = 1.0) -> None:
        """Spend ``cost`` tokens for ``key``; raise RateLimited when there are not enough."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < cost:
            wait = (cost - bucket.tokens) / self.rate
            raise RateLimited(f"rate limit exceeded for {key}; retry in {wait:.2f}s")
        bucket.tokens -= cost

    def _evict(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full or list(self._buckets)[: len(self._buckets) // 10 + 1]:
            del self._buckets[key]
