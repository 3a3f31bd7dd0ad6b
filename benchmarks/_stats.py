"""Helpers every benchmark shares: interleaved ratios with their spread, process CPU and memory.

A benchmark measures its baseline and its subject in alternating blocks (A, B,
A, B, ...) so that drift on a shared machine hits both alike, then reports the
median of the per-round ratios with the lowest and highest round.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Ratio:
    """Median of per-round ratios, with the spread over rounds."""

    median: float
    low: float
    high: float
    rounds: int

    def __str__(self) -> str:
        return f"{self.median:.2f}x (rounds {self.low:.2f}-{self.high:.2f}, n={self.rounds})"


def ratio(subject: Sequence[float], baseline: Sequence[float]) -> Ratio:
    """Per-round ``subject / baseline``, summarised; the lists pair up round by round."""
    values = [s / b for s, b in zip(subject, baseline, strict=True) if b]
    if not values:
        return Ratio(0.0, 0.0, 0.0, 0)
    return Ratio(statistics.median(values), min(values), max(values), len(values))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of the process now."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE
