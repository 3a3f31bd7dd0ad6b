"""Token buckets: bursts allowed, sustained floods refused, memory bounded."""

import pytest

from coral.coordination.ratelimit import RateLimited, RateLimiter


def test_burst_then_refusal_then_refill():
    now = [0.0]
    limiter = RateLimiter(rate=10, burst=5, clock=lambda: now[0])
    for _ in range(5):
        limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    limiter.take("b")  # other keys are independent
    now[0] += 0.1
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


def test_bucket_count_is_bounded():
    now = [0.0]
    limiter = RateLimiter(rate=1, burst=1, clock=lambda: now[0], max_keys=100)
    for i in range(1000):
        limiter.take(f"k{i}")
        now[0] += 0.01
    assert len(limiter._buckets) <= 100


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1, clock=lambda: 0.0)
