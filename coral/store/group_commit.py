"""Group commit: one task commits queued work in groups, one transaction per group.

Work that arrives while a group is committing waits and goes into the next
group, so a durable sync is paid once per group instead of once per caller.
What a group's transaction does is the caller's business (``commit``): SQLite
runs plain functions under a savepoint each (``SqliteDatabase.write``), the
ledger stores apply a batch of ledger submissions to one working set. The
queue, the flush task, delivery of results and cancellation live only here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from coral.protocol.errors import StorageUnavailable

W = TypeVar("W")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Failed:
    """One item's own failure inside a group that otherwise committed."""

    error: Exception


@dataclass(slots=True)
class GroupCommitStats:
    """Counters for metrics: how many submissions shared how many commits."""

    submissions: int = 0
    groups: int = 0
    failed_groups: int = 0
    largest_group: int = 0


def _unavailable(exc: Exception) -> Exception:
    if isinstance(exc, StorageUnavailable):
        return exc
    error = StorageUnavailable(f"commit failed, nothing of the group was stored: {exc}")
    error.__cause__ = exc
    return error


class GroupCommitter(Generic[W, R]):
    """Queues work items and commits each group of them with one ``commit`` call.

    ``commit(group)`` runs one transaction and returns one outcome per item,
    in order: a result, or ``Failed`` for an item that failed alone (the rest
    of its group still committed). If ``commit`` raises, nothing of the group
    was stored and every item of the group gets ``error(exc)``.
    """

    def __init__(
        self,
        commit: Callable[[list[W]], Awaitable[Sequence[R | Failed]]],
        *,
        max_group: int,
        error: Callable[[Exception], Exception] = _unavailable,
        name: str = "group-commit",
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self._commit = commit
        self._max_group = max_group
        self._error = error
        self._name = name
        self._pending: deque[tuple[W, asyncio.Future[R]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = GroupCommitStats()

    async def submit(self, work: W) -> R:
        """Commit ``work`` in the next group; return its result once the group committed.

        Raises:
            StorageUnavailable: the committer is closed, or the group's commit was
                interrupted (its outcome is unknown: retry idempotently).
            Exception: ``error(exc)`` when the group's commit failed (nothing of the
                group was stored), or the item's own error from ``Failed``.

        Cancellation: work still waiting in the queue is withdrawn and never runs;
        work whose group has started commits or rolls back with that group, whole,
        and the cancelled caller does not learn which.
        """
        if self._closed:
            raise StorageUnavailable(f"{self._name}: closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        self._ensure_flushing()
        return await future

    async def close(self) -> None:
        """Commit everything already queued, then refuse new work; safe to call twice.

        Raises:
            Nothing of its own: failures are delivered to the submitters.

        Cancellation: cancelling ``close`` does not cancel the group in flight;
        queued work keeps committing in the background.
        """
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            # The flush task drains the whole queue before it ends; waiting (rather
            # than awaiting the task) keeps a cancelled close from cancelling it.
            await asyncio.wait({task})

    def _ensure_flushing(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush(), name=self._name)

    async def _flush(self) -> None:
        while self._pending:
            group: list[tuple[W, asyncio.Future[R]]] = []
            while self._pending and len(group) < self._max_group:
                item = self._pending.popleft()
                if not item[1].done():  # a cancelled waiter withdrew its work
                    group.append(item)
            if group:
                await self._commit_group(group)

    async def _commit_group(self, group: list[tuple[W, asyncio.Future[R]]]) -> None:
        self.stats.groups += 1
        self.stats.submissions += len(group)
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        try:
            outcomes = await self._commit([work for work, _ in group])
        except Exception as exc:  # every submitter of a failed commit learns why
            self.stats.failed_groups += 1
            error = self._error(exc)
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        except BaseException:
            # Cancelled (or interrupted) mid-commit: the outcome is unknown to us, so
            # the submitters retry with the same ids. The cancellation goes on up.
            self.stats.failed_groups += 1
            for _, future in group:
                if not future.done():
                    future.set_exception(
                        StorageUnavailable(f"{self._name}: writer stopped mid-commit; retry")
                    )
            # Nobody flushes the rest now: tell them rather than leave them waiting.
            while self._pending:
                _, future = self._pending.popleft()
                if not future.done():
                    future.set_exception(
                        StorageUnavailable(f"{self._name}: writer stopped; nothing was stored")
                    )
            raise
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Failed):
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome)
