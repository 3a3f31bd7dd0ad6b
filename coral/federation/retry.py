"""Retry timing for the outbox: exponential backoff with full jitter.

Full jitter (a uniform draw below the exponential ceiling) spreads retries
from many senders after a shared outage, instead of having them all return
to a recovering node in lockstep.
"""

from __future__ import annotations

import random


def next_retry_ms(
    attempt: int, rng: random.Random, base_ms: int = 500, cap_ms: int = 300_000
) -> int:
    """Delay before retry ``attempt`` (0 = first): uniform in [0, min(cap, base * 2**attempt)]."""
    if attempt < 0:
        raise ValueError("attempt counts from 0")
    # Capping the exponent first keeps 2**attempt from growing without bound.
    ceiling = min(cap_ms, base_ms * (1 << min(attempt, 62)))
    return rng.randint(0, ceiling)
