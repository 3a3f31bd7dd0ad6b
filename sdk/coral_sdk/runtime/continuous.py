"""Continuous batching: requests that need different numbers of model steps share one batch.

A ``DynamicBatcher`` runs a whole batch to completion before taking new work,
so one slow request holds every other one back. A ``ContinuousBatcher`` drives
a *step batch* instead: each round it admits whatever requests arrived, runs
one step over every live request, and resolves the requests that finished on
that step, which leave the batch while new ones join. TRM uses it: a Sudoku
that verifies after 2 supervision steps answers after 2 steps even when the
puzzle next to it needs 16.

The step batch runs in one dedicated worker thread, so the model never runs
twice at once and the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from coral_sdk.runtime.batcher import BatcherClosed

Req = TypeVar("Req")
Res = TypeVar("Res")
ReqIn = TypeVar("ReqIn", contravariant=True)


class StepBatch(Protocol[ReqIn, Res]):
    """What a ``ContinuousBatcher`` drives: admit work, step, report what finished."""

    def admit(self, ticket: Hashable, item: ReqIn) -> None:
        """Queue one request under ``ticket``; it joins at the next ``step``."""

    def step(self) -> list[tuple[Hashable, Res]]:
        """Run one step over the live batch; the (ticket, result) of each finished request."""
        ...

    def __len__(self) -> int:
        """Requests admitted and not finished yet."""
        ...


@dataclass
class ContinuousStats:
    """What the batcher has done: steps run, requests finished, mean rows per step."""

    steps: int = 0
    items: int = 0
    rows: int = 0
    live: int = 0

    @property
    def mean_batch_size(self) -> float:
        """Average live requests per step (0.0 before the first step)."""
        return self.rows / self.steps if self.steps else 0.0


class ContinuousBatcher(Generic[Req, Res]):
    """Feeds submitted requests into a step batch made by ``make_batch`` (in the worker thread).

    ``run_step`` wraps each step call (e.g. to enter ``torch.inference_mode``
    or load the model first); it receives a zero-argument function and must
    call it. A step that raises fails every request in the batch, and the
    next submission starts a fresh batch.
    """

    def __init__(
        self,
        make_batch: Callable[[], StepBatch[Req, Res]],
        *,
        run_step: Callable[[Callable[[], list[tuple[Hashable, Res]]]], list[tuple[Hashable, Res]]]
        | None = None,
        name: str = "continuous",
    ) -> None:
        self._make_batch = make_batch
        self._run_step = run_step or (lambda step: step())
        self._name = name
        self._batch: StepBatch[Req, Res] | None = None
        self._incoming: list[tuple[int, Req]] = []
        self._futures: dict[Hashable, asyncio.Future[Res]] = {}
        self._in_batch: set[Hashable] = set()
        self._tickets = itertools.count()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stats = ContinuousStats()

    async def start(self) -> None:
        """Start the worker task and thread (idempotent)."""
        if self._worker is not None:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        self._worker = asyncio.create_task(self._work(), name=f"{self._name}-worker")

    async def aclose(self) -> None:
        """Stop the worker; requests still in flight fail with ``BatcherClosed``."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            # wait() does not re-raise the worker's cancellation, so a cancellation
            # of aclose() itself still propagates.
            await asyncio.wait([worker])
        for future in self._futures.values():
            if not future.done():
                future.set_exception(BatcherClosed("continuous batcher closed"))
        self._futures.clear()
        self._incoming.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> ContinuousBatcher[Req, Res]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def stats(self) -> ContinuousStats:
        """A snapshot of the counters."""
        return ContinuousStats(
            self._stats.steps, self._stats.items, self._stats.rows, len(self._futures)
        )

    async def submit(self, item: Req) -> Res:
        """Queue ``item`` and wait for its result."""
        if self._worker is None or self._wakeup is None:
            raise BatcherClosed("continuous batcher is not running")
        ticket = next(self._tickets)
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        self._incoming.append((ticket, item))
        self._wakeup.set()
        return await future

    def _step(self, joining: list[tuple[int, Req]]) -> list[tuple[Hashable, Res]]:
        # Runs in the worker thread.
        if self._batch is None:
            self._batch = self._make_batch()
        for ticket, item in joining:
            self._batch.admit(ticket, item)
        live = len(self._batch)
        finished = self._run_step(self._batch.step)
        self._stats.steps += 1
        self._stats.rows += live
        return finished

    async def _work(self) -> None:
        assert self._wakeup is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._incoming and (self._batch is None or len(self._batch) == 0):
                self._wakeup.clear()
                await self._wakeup.wait()
            joining, self._incoming = self._incoming, []
            self._in_batch.update(ticket for ticket, _ in joining)
            try:
                finished = await loop.run_in_executor(self._executor, self._step, joining)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The batch's state is unknown now: fail everything in it and start afresh.
                self._batch = None
                for ticket in self._in_batch:
                    failed = self._futures.pop(ticket, None)
                    if failed is not None and not failed.done():
                        failed.set_exception(exc)
                self._in_batch.clear()
                continue
            for ticket, result in finished:
                self._in_batch.discard(ticket)
                future = self._futures.pop(ticket, None)
                self._stats.items += 1
                if future is not None and not future.done():
                    future.set_result(result)
