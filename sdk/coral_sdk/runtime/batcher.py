"""Dynamic batching: gather concurrent requests into one call of a batch function.

Callers ``await batcher.submit(item)`` from many tasks; a single worker task
collects whatever is queued (up to ``max_batch_size``, waiting at most
``max_wait_ms`` after the first item for more) and runs the batch function in a
dedicated worker thread, so a model forward never blocks the event loop and
never runs twice at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Req = TypeVar("Req")
Res = TypeVar("Res")


class BatcherClosed(RuntimeError):
    """The batcher is not running (never started, or closed) so it cannot take work."""


class BatchSizeMismatch(RuntimeError):
    """The batch function returned a different number of results than it was given."""


@dataclass
class BatcherStats:
    """A snapshot of what the batcher has done so far."""

    queue_depth: int = 0
    batches: int = 0
    items: int = 0
    failed_batches: int = 0
    #: batch size -> number of batches run with that size
    batch_size_histogram: dict[int, int] = field(default_factory=dict)
    #: submit-to-result latency of completed items, in milliseconds
    mean_latency_ms: float = 0.0
    max_latency_ms: float = 0.0

    @property
    def mean_batch_size(self) -> float:
        """Average number of items per batch (0.0 before the first batch)."""
        return self.items / self.batches if self.batches else 0.0


@dataclass
class _Pending(Generic[Req, Res]):
    item: Req
    future: asyncio.Future[Res]
    submitted_at: float


class _Metrics:
    """prometheus-client instruments for one batcher, registered on a given registry."""

    def __init__(self, registry: CollectorRegistry, name: str, max_batch_size: int) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        labels = ["batcher"]
        self.queue_depth = Gauge(
            "coral_batcher_queue_depth", "Requests waiting for a batch", labels, registry=registry
        ).labels(name)
        self.batches = Counter(
            "coral_batcher_batches", "Batches run", labels, registry=registry
        ).labels(name)
        buckets = sorted({1, *(2**i for i in range(max_batch_size.bit_length())), max_batch_size})
        self.batch_size = Histogram(
            "coral_batcher_batch_size",
            "Items per batch",
            labels,
            buckets=[float(b) for b in buckets],
            registry=registry,
        ).labels(name)
        self.latency = Histogram(
            "coral_batcher_latency_seconds",
            "Submit-to-result latency",
            labels,
            registry=registry,
        ).labels(name)


class DynamicBatcher(Generic[Req, Res]):
    """Run ``fn(list[Req]) -> list[Res]`` on batches built from concurrent ``submit`` calls.

    Guarantees: results are returned to the caller that submitted the matching
    item; an exception raised by ``fn`` is raised in every caller of that batch;
    a cancelled caller is dropped without disturbing the others.
    """

    def __init__(
        self,
        fn: Callable[[list[Req]], list[Res]],
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        registry: CollectorRegistry | None = None,
        name: str = "default",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        self._fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Pending[Req, Res]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stats = BatcherStats()
        self._latency_total_ms = 0.0
        self._latency_count = 0
        self._metrics = _Metrics(registry, name, max_batch_size) if registry is not None else None

    async def start(self) -> None:
        """Start the worker task; idempotent."""
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        # One thread: the model is called by exactly one batch at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="coral-batcher")
        self._worker = asyncio.create_task(self._run(), name="coral-dynamic-batcher")

    async def aclose(self) -> None:
        """Stop the worker; callers still queued get ``BatcherClosed``. Idempotent.

        A batch already running in the worker thread finishes first, and its
        callers get their results.
        """
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.cancel()
        try:
            await worker
        except asyncio.CancelledError:
            pass
        queue = self._queue
        while queue is not None and not queue.empty():
            pending = queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(BatcherClosed("batcher closed before this item ran"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> DynamicBatcher[Req, Res]:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def submit(self, item: Req) -> Res:
        """Queue ``item`` and wait for its result (or the batch function's exception)."""
        if self._worker is None or self._queue is None:
            raise BatcherClosed("batcher is not running; call start() first")
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, future, time.perf_counter()))
        self._observe_queue()
        return await future

    def stats(self) -> BatcherStats:
        """Return a copy of the current statistics."""
        snapshot = BatcherStats(
            queue_depth=self._queue.qsize() if self._queue is not None else 0,
            batches=self._stats.batches,
            items=self._stats.items,
            failed_batches=self._stats.failed_batches,
            batch_size_histogram=dict(self._stats.batch_size_histogram),
            mean_latency_ms=self._stats.mean_latency_ms,
            max_latency_ms=self._stats.max_latency_ms,
        )
        return snapshot

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._collect(self._queue)
            if batch:
                await self._execute(batch)

    async def _collect(self, queue: asyncio.Queue[_Pending[Req, Res]]) -> list[_Pending[Req, Res]]:
        """Wait for one item, then gather more until full or ``max_wait`` has passed."""
        batch = [await queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        self._observe_queue()
        # Callers that gave up while queued are skipped rather than computed.
        return [pending for pending in batch if not pending.future.done()]

    async def _execute(self, batch: list[_Pending[Req, Res]]) -> None:
        items = [pending.item for pending in batch]
        loop = asyncio.get_running_loop()
        running = loop.run_in_executor(self._executor, self._fn, items)
        closing = False
        while not running.done():
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                # aclose() while a batch runs: the thread cannot be interrupted,
                # so let it finish and hand its callers their results first.
                closing = True
            except Exception:
                break
        self._deliver(batch, running)
        if closing:
            raise asyncio.CancelledError

    def _deliver(self, batch: list[_Pending[Req, Res]], running: asyncio.Future[list[Res]]) -> None:
        error = running.exception()
        results: list[Res] = []
        if error is None:
            results = running.result()
            if len(results) != len(batch):
                error = BatchSizeMismatch(
                    f"batch function returned {len(results)} results for {len(batch)} items"
                )
        self._record_batch(len(batch))
        if error is not None:
            self._stats.failed_batches += 1
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        now = time.perf_counter()
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
                self._record_latency((now - pending.submitted_at) * 1000.0)

    def _record_batch(self, size: int) -> None:
        self._stats.batches += 1
        self._stats.items += size
        histogram = self._stats.batch_size_histogram
        histogram[size] = histogram.get(size, 0) + 1
        if self._metrics is not None:
            self._metrics.batches.inc()
            self._metrics.batch_size.observe(size)

    def _record_latency(self, latency_ms: float) -> None:
        self._latency_total_ms += latency_ms
        self._latency_count += 1
        self._stats.mean_latency_ms = self._latency_total_ms / self._latency_count
        self._stats.max_latency_ms = max(self._stats.max_latency_ms, latency_ms)
        if self._metrics is not None:
            self._metrics.latency.observe(latency_ms / 1000.0)

    def _observe_queue(self) -> None:
        if self._metrics is not None and self._queue is not None:
            self._metrics.queue_depth.set(self._queue.qsize())
