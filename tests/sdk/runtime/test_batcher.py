"""DynamicBatcher: batching, limits, error propagation, cancellation, stats and metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from coral_sdk.runtime.batcher import BatcherClosed, BatchSizeMismatch, DynamicBatcher


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds (a hang guard, not a speed claim)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


def square_all(items: list[int]) -> list[int]:
    return [item * item for item in items]


async def test_batched_results_equal_unbatched_results() -> None:
    seen_sizes: list[int] = []

    def recording(items: list[int]) -> list[int]:
        seen_sizes.append(len(items))
        return square_all(items)

    async with DynamicBatcher(recording, max_batch_size=16, max_wait_ms=20) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(50)))
    assert results == [i * i for i in range(50)]
    assert max(seen_sizes) > 1, "concurrent submissions should share batches"
    assert sum(seen_sizes) == 50


async def test_max_batch_size_is_never_exceeded() -> None:
    sizes: list[int] = []

    def recording(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    async with DynamicBatcher(recording, max_batch_size=4, max_wait_ms=50) as batcher:
        assert await asyncio.gather(*(batcher.submit(i) for i in range(23))) == list(range(23))
    assert max(sizes) == 4
    assert batcher.stats().batch_size_histogram.get(4, 0) >= 5


async def test_lone_request_is_flushed_after_max_wait_without_a_full_batch() -> None:
    async with DynamicBatcher(square_all, max_batch_size=64, max_wait_ms=10) as batcher:
        # A batcher that waited for a full batch would never answer: the hang guard
        # fails with a message instead of measuring how fast the answer came.
        try:
            result = await asyncio.wait_for(batcher.submit(7), 30)
        except TimeoutError:
            raise AssertionError("a lone request was never flushed") from None
        assert result == 49
    assert batcher.stats().batch_size_histogram == {1: 1}  # flushed alone, short of 64


async def test_exception_in_batch_function_reaches_every_caller_of_that_batch() -> None:
    def failing(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("unlucky batch")
        return items

    async with DynamicBatcher(failing, max_batch_size=8, max_wait_ms=50) as batcher:
        outcomes = await asyncio.gather(
            *(batcher.submit(i) for i in range(10, 16)), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        # The batcher survives a failed batch.
        assert await batcher.submit(1) == 1
    stats = batcher.stats()
    assert stats.failed_batches >= 1


async def test_wrong_result_count_is_reported_to_callers() -> None:
    def drop_last(items: list[int]) -> list[int]:
        return items[:-1]

    async with DynamicBatcher(drop_last, max_wait_ms=20) as batcher:
        with pytest.raises(BatchSizeMismatch):
            await batcher.submit(1)


async def test_cancelled_waiter_does_not_break_the_others() -> None:
    release = threading.Event()

    running = threading.Event()

    def slow(items: list[int]) -> list[int]:
        running.set()
        release.wait(5)
        return [item + 100 for item in items]

    async with DynamicBatcher(slow, max_batch_size=2, max_wait_ms=1) as batcher:
        first = asyncio.create_task(batcher.submit(1))  # occupies the worker
        await until(running.is_set)
        doomed = asyncio.create_task(batcher.submit(2))
        survivor = asyncio.create_task(batcher.submit(3))
        await until(lambda: batcher.stats().queue_depth == 2)  # both queued behind it
        doomed.cancel()
        release.set()
        assert await first == 101
        assert await survivor == 103
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert await batcher.submit(4) == 104


async def test_submit_before_start_or_after_close_raises_batcher_closed() -> None:
    batcher: DynamicBatcher[int, int] = DynamicBatcher(square_all)
    with pytest.raises(BatcherClosed):
        await batcher.submit(1)
    await batcher.start()
    assert await batcher.submit(3) == 9
    await batcher.aclose()
    with pytest.raises(BatcherClosed):
        await batcher.submit(1)


async def test_close_lets_running_batch_finish_and_fails_queued_items() -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(items: list[int]) -> list[int]:
        entered.set()
        release.wait(5)
        return items

    batcher: DynamicBatcher[int, int] = DynamicBatcher(slow, max_batch_size=1, max_wait_ms=0)
    await batcher.start()
    running = asyncio.create_task(batcher.submit(1))
    await until(entered.is_set)  # item 1 is in the batch function
    queued = asyncio.create_task(batcher.submit(2))
    await until(lambda: batcher.stats().queue_depth == 1)  # item 2 waits in the queue
    # Release the batch only once aclose has begun: it stops the worker before it
    # first awaits, so this callback (run after that await) cannot let item 2 in.
    asyncio.get_running_loop().call_soon(release.set)
    await asyncio.wait_for(batcher.aclose(), 30)
    assert await running == 1
    with pytest.raises(BatcherClosed):
        await queued


async def test_batch_function_runs_off_the_event_loop_thread() -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def record(items: list[int]) -> list[int]:
        threads.append(threading.get_ident())
        return items

    async with DynamicBatcher(record) as batcher:
        await batcher.submit(1)
    assert threads and threads[0] != loop_thread


async def test_stats_and_prometheus_metrics_track_batches() -> None:
    registry = CollectorRegistry()
    async with DynamicBatcher(
        square_all, max_batch_size=8, max_wait_ms=20, registry=registry, name="squares"
    ) as batcher:
        await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    stats = batcher.stats()
    assert stats.items == 20
    assert stats.batches == sum(stats.batch_size_histogram.values())
    assert stats.mean_batch_size == pytest.approx(20 / stats.batches)
    assert stats.max_latency_ms >= stats.mean_latency_ms > 0
    assert stats.queue_depth == 0
    labels = {"batcher": "squares"}
    assert registry.get_sample_value("coral_batcher_batches_total", labels) == stats.batches
    assert registry.get_sample_value("coral_batcher_batch_size_sum", labels) == 20
    assert registry.get_sample_value("coral_batcher_latency_seconds_count", labels) == 20
