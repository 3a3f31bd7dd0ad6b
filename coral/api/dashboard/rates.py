"""Rates for the dashboard charts, sampled from the node's prometheus registry.

Counters only ever grow, so a rate is the difference between two samples
divided by the time between them. Latency quantiles come from the change in
the histogram buckets over the same interval, which keeps a long-lived
stream (observed once, when it ends) from skewing the line for ever.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

#: Points kept per series (one a sample; the default interval gives two minutes).
HISTORY = 120


@dataclass(frozen=True, slots=True)
class RegistryReading:
    """Totals read from the registry at one instant."""

    at_s: float
    messages: float
    requests: float
    rejections: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending
    gauges: dict[str, float]


def read_registry(registry: CollectorRegistry, at_s: float) -> RegistryReading:
    """Sum the node's counters over their labels and collect its latency buckets."""
    sums: dict[str, float] = {}
    bucket_counts: dict[float, float] = {}
    gauges: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "coral_request_seconds_bucket":
                bound = float(sample.labels["le"])
                bucket_counts[bound] = bucket_counts.get(bound, 0.0) + sample.value
            elif family.type == "gauge":
                gauges[sample.name] = gauges.get(sample.name, 0.0) + sample.value
            elif sample.name.endswith("_total"):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return RegistryReading(
        at_s=at_s,
        messages=sums.get("coral_messages_routed_total", 0.0),
        requests=sums.get("coral_requests_total", 0.0),
        rejections=sums.get("coral_rejections_total", 0.0),
        buckets=tuple(sorted(bucket_counts.items())),
        gauges=gauges,
    )


def quantile_from_buckets(
    before: tuple[tuple[float, float], ...], after: tuple[tuple[float, float], ...], q: float
) -> float | None:
    """The ``q`` quantile (seconds) of observations made between two bucket readings.

    Interpolates linearly inside the bucket, as PromQL's histogram_quantile
    does; None when nothing was observed in between.
    """
    old = dict(before)
    deltas = [(bound, count - old.get(bound, 0.0)) for bound, count in after]
    if not deltas or deltas[-1][1] <= 0:
        return None
    target = q * deltas[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in deltas:
        if count >= target:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            fraction = 0.0 if width <= 0 else (target - lower_count) / width
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound


class RateSampler:
    """Keeps recent per-second rates and latency quantiles for the charts."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        self.registry = registry
        self.clock = clock
        self.series: dict[str, deque[float | None]] = {
            name: deque(maxlen=HISTORY)
            for name in ("messages_per_s", "requests_per_s", "latency_p50_ms", "latency_p95_ms")
        }
        self.times: deque[float] = deque(maxlen=HISTORY)
        self._last: RegistryReading | None = None

    def sample(self) -> None:
        """Read the registry once and append one point to every series."""
        now = read_registry(self.registry, self.clock())
        last, self._last = self._last, now
        if last is None or now.at_s <= last.at_s:
            return
        elapsed = now.at_s - last.at_s
        p50 = quantile_from_buckets(last.buckets, now.buckets, 0.5)
        p95 = quantile_from_buckets(last.buckets, now.buckets, 0.95)
        self.times.append(now.at_s)
        self.series["messages_per_s"].append((now.messages - last.messages) / elapsed)
        self.series["requests_per_s"].append((now.requests - last.requests) / elapsed)
        self.series["latency_p50_ms"].append(None if p50 is None else p50 * 1000)
        self.series["latency_p95_ms"].append(None if p95 is None else p95 * 1000)

    async def sample_async(self) -> None:
        """``sample`` for the subsystem's periodic runner."""
        self.sample()

    def view(self) -> dict[str, Any]:
        """Series rounded for display, plus the current totals and gauges."""
        reading = self._last
        return {
            "series": {
                name: [None if v is None else round(v, 3) for v in values]
                for name, values in self.series.items()
            },
            "totals": {
                "messages": reading.messages if reading else 0,
                "requests": reading.requests if reading else 0,
                "rejections": reading.rejections if reading else 0,
            },
            "gauges": dict(reading.gauges) if reading else {},
        }
