"""Exponential backoff with full jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coral.federation.retry import next_retry_ms


@given(
    attempt=st.integers(0, 200),
    seed=st.integers(0, 2**32),
    base=st.integers(1, 10_000),
    cap=st.integers(1, 10**7),
)
def test_delay_stays_below_the_exponential_ceiling_and_the_cap(
    attempt: int, seed: int, base: int, cap: int
) -> None:
    delay = next_retry_ms(attempt, random.Random(seed), base, cap)
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_delays_are_jittered_and_grow_until_the_cap() -> None:
    rng = random.Random(1)
    first = [next_retry_ms(0, rng, 100, 10_000) for _ in range(200)]
    late = [next_retry_ms(6, rng, 100, 10_000) for _ in range(200)]
    capped = [next_retry_ms(40, rng, 100, 10_000) for _ in range(200)]
    assert len(set(first)) > 50, "full jitter spreads retries"
    assert sum(late) / len(late) > 10 * sum(first) / len(first)
    assert max(capped) <= 10_000 and sum(capped) / len(capped) > 3_000


def test_a_negative_attempt_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        next_retry_ms(-1, random.Random(0))
