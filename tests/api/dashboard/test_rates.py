"""Dashboard rates: per-second deltas of the node's counters and bucket-based latency quantiles."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coral.api.dashboard.rates import HISTORY, RateSampler, quantile_from_buckets
from coral.metrics import NodeMetrics

BOUNDS = (0.001, 0.01, 0.1, 1.0, float("inf"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cumulative(counts: list[int]) -> tuple[tuple[float, float], ...]:
    total, out = 0, []
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        out.append((bound, float(total)))
    return tuple(out)


def test_rates_are_deltas_over_elapsed_time():
    metrics, clock = NodeMetrics(), Clock()
    sampler = RateSampler(metrics.registry, clock)
    sampler.sample()  # first reading: no interval yet, no point
    assert sampler.view()["series"]["messages_per_s"] == []
    metrics.messages_routed.inc(10)
    metrics.requests.labels("http", "GET /", "200").inc(3)
    metrics.requests.labels("grpc", "Send", "OK").inc(1)
    for _ in range(4):
        metrics.request_seconds.labels("http").observe(0.004)
    clock.now += 2.0
    sampler.sample()
    view = sampler.view()
    assert view["series"]["messages_per_s"] == [5.0]
    assert view["series"]["requests_per_s"] == [2.0]
    assert 1.0 <= view["series"]["latency_p50_ms"][0] <= 5.0
    assert view["totals"]["messages"] == 10
    clock.now += 1.0
    sampler.sample()  # nothing happened: zero rate, no latency
    assert view_last(sampler, "messages_per_s") == 0.0
    assert view_last(sampler, "latency_p95_ms") is None


def view_last(sampler: RateSampler, name: str) -> float | None:
    return sampler.view()["series"][name][-1]


def test_history_is_bounded():
    metrics, clock = NodeMetrics(), Clock()
    sampler = RateSampler(metrics.registry, clock)
    for _ in range(HISTORY + 30):
        clock.now += 1
        sampler.sample()
    assert len(sampler.view()["series"]["requests_per_s"]) == HISTORY


def test_quantile_interpolates_inside_the_bucket():
    before = cumulative([0, 0, 0, 0, 0])
    after = cumulative([0, 10, 0, 0, 0])  # all ten between 1 ms and 10 ms
    assert quantile_from_buckets(before, after, 0.5) == 0.001 + (0.01 - 0.001) * 0.5
    assert quantile_from_buckets(after, after, 0.5) is None  # nothing new observed


@given(
    st.lists(st.integers(0, 50), min_size=5, max_size=5),
    st.lists(st.integers(0, 50), min_size=5, max_size=5),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
)
def test_quantiles_are_monotone_and_bounded(old, new, q1, q2):
    before = cumulative(old)
    after = cumulative([a + b for a, b in zip(old, new, strict=True)])
    low, high = sorted((q1, q2))
    first = quantile_from_buckets(before, after, low)
    second = quantile_from_buckets(before, after, high)
    if sum(new) == 0:
        assert first is None and second is None
        return
    assert first is not None and second is not None
    assert 0.0 <= first <= second <= 1.0  # never past the last finite bound
