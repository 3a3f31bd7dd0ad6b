"""Task records that write running states late and final states at once, in one transaction.

A blocking ``SendMessage`` saves its task three or four times (SUBMITTED,
WORKING, an artifact, COMPLETED) and binds its context to a Coral thread; each
was a trip to the database. ``DeferredRunningWrites`` keeps SUBMITTED and
WORKING rows and context bindings in memory (reads see them at once) and
writes them with the next final or interrupted save, or after
``delay_s`` when none comes, so a task that finishes quickly costs one write
and a long one is on disk within ``delay_s``. What a client is answered with
(a final or interrupted task) is written before the answer, as before.

With ``delay_s = 0`` every save and binding is written at once (a store
shared by replicas, whose other replicas watch each state, wants that).

Order: rows go to the store in the order they were saved, because each write
is queued with the store before the next one can start, and a final save
takes the pending rows with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from coral.api.a2a.tasks import (
    RUNNING_STATES,
    A2ATaskRecords,
    ContextBinding,
    TaskQuery,
    TaskRow,
)

log = logging.getLogger("coral.a2a")

#: How long a SUBMITTED or WORKING task, or a new context binding, stays only in memory.
DEFAULT_DELAY_S = 0.05


class DeferredRunningWrites:
    """An ``A2ATaskRecords`` over another that writes running tasks and bindings late."""

    def __init__(self, inner: A2ATaskRecords, *, delay_s: float = DEFAULT_DELAY_S) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self._tasks: dict[tuple[str, str], TaskRow] = {}
        self._contexts: dict[tuple[str, str], ContextBinding] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def _take(self, also: Sequence[TaskRow] = ()) -> tuple[list[TaskRow], list[ContextBinding]]:
        for row in also:
            self._tasks.pop((row.scope, row.task_id), None)
        tasks, contexts = [*self._tasks.values(), *also], list(self._contexts.values())
        self._tasks.clear()
        self._contexts.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return tasks, contexts

    def _schedule(self) -> None:
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.delay_s, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._flush_logged(), name="a2a-task-writes")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # the rows are lost; the next save writes its own
            log.warning("writing running A2A tasks failed: %s", exc)

    async def flush(self, also: Sequence[TaskRow] = ()) -> None:
        """Write every pending row (and ``also``) now, in one transaction.

        Raises:
            StorageUnavailable: the store could not write (the rows are dropped).

        Cancellation: the rows were already handed to the store, which commits
        or rolls them back whole.
        """
        tasks, contexts = self._take(also)
        if tasks or contexts:
            await self.inner.save_batch(tasks, contexts)

    async def close(self) -> None:
        """Write what is pending and wait for background writes."""
        await self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def save_task(self, row: TaskRow) -> None:
        """Keep a running task in memory; write a final or interrupted one now, with the rest."""
        if row.state in RUNNING_STATES and self.delay_s > 0:
            self._tasks[(row.scope, row.task_id)] = row
            self._schedule()
            return
        await self.flush((row,))

    async def save_batch(
        self, tasks: Sequence[TaskRow], contexts: Sequence[ContextBinding]
    ) -> None:
        """Write the pending rows and these now, in one transaction."""
        for binding in contexts:
            self._contexts[(binding.scope, binding.context_id)] = binding
        await self.flush(tasks)

    async def get_task(self, scope: str, task_id: str) -> bytes | None:
        """One task of a scope, serialized (a pending row when there is one)."""
        row = self._tasks.get((scope, task_id))
        if row is not None:
            return row.body
        return await self.inner.get_task(scope, task_id)

    async def list_tasks(self, scope: str, query: TaskQuery) -> tuple[list[bytes], int]:
        """A page of tasks, pending ones written first."""
        await self.flush()
        return await self.inner.list_tasks(scope, query)

    async def delete_task(self, scope: str, task_id: str) -> None:
        """Forget a task and its push configs."""
        await self.flush()
        await self.inner.delete_task(scope, task_id)

    async def evict(self, finished_before_ns: int, keep: int) -> int:
        """Drop old finished tasks, then the oldest beyond ``keep``."""
        await self.flush()
        return await self.inner.evict(finished_before_ns, keep)

    async def unfinished(self) -> list[TaskRow]:
        """Every task still SUBMITTED or WORKING."""
        await self.flush()
        return await self.inner.unfinished()

    async def bind_thread(self, scope: str, context_id: str, thread_id: str) -> None:
        """Remember a context's thread (written with the next final save; now with no delay)."""
        self._contexts[(scope, context_id)] = ContextBinding(scope, context_id, thread_id)
        if self.delay_s > 0:
            self._schedule()
        else:
            await self.flush()

    async def thread_of(self, scope: str, context_id: str) -> str | None:
        """A context's thread (a pending binding when there is one)."""
        binding = self._contexts.get((scope, context_id))
        if binding is not None:
            return binding.thread_id
        return await self.inner.thread_of(scope, context_id)

    async def save_push(self, scope: str, task_id: str, config_id: str, body: bytes) -> None:
        """Insert or replace a push config."""
        await self.inner.save_push(scope, task_id, config_id, body)

    async def push_configs(self, scope: str | None, task_id: str) -> list[bytes]:
        """A task's push configs."""
        return await self.inner.push_configs(scope, task_id)

    async def delete_push(self, scope: str, task_id: str, config_id: str | None) -> None:
        """Delete push configs."""
        await self.inner.delete_push(scope, task_id, config_id)
