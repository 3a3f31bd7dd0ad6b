"""Flow-GRPO advantages: group-normalised trajectory rewards, broadcast to every turn.

Pure Python so the arithmetic can be checked by hand and reused without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ADVANTAGE_EPS = 1e-6


def group_advantages(rewards: Sequence[float], eps: float = ADVANTAGE_EPS) -> list[float]:
    """``A_i = (R_i - mean(R)) / (std(R) + eps)`` over one query's group of rollouts.

    ``std`` is the sample (n-1) standard deviation, as in verl's GRPO estimator;
    a group of one, or one where every reward is equal, gets zero advantages.
    """
    count = len(rewards)
    if count < 2:
        return [0.0] * count
    mean = sum(rewards) / count
    variance = sum((reward - mean) ** 2 for reward in rewards) / (count - 1)
    std = math.sqrt(variance)
    return [(reward - mean) / (std + eps) for reward in rewards]


def broadcast_to_turns(advantages: Sequence[float], turn_counts: Sequence[int]) -> list[float]:
    """Give every turn of trajectory ``i`` the same advantage ``A_i`` (flattened in order)."""
    if len(advantages) != len(turn_counts):
        raise ValueError("one turn count per trajectory is required")
    return [
        advantage
        for advantage, turns in zip(advantages, turn_counts, strict=True)
        for _ in range(turns)
    ]
