"""One inbox reader per node-held agent, fanning thread entries out to their listeners.

A node-held agent (the A2A gateway, an A2A proxy) may have many A2A tasks in
flight. Instead of one engine wait per task (the engine caps waits per agent),
a single loop reads the agent's inbox and hands each entry to whoever
listens to its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from coral.coordination.model import InboxEntry
from coral.coordination.service import CoordinationService

log = logging.getLogger("coral.a2a")

#: How long one engine wait lasts before the loop waits again.
_WAIT_MS = 30_000


class InboxFanout:
    """Reads one agent's inbox (every message) and routes entries by thread id."""

    def __init__(
        self,
        engine: CoordinationService,
        agent: str,
        on_unrouted: Callable[[InboxEntry], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.agent = agent
        self.on_unrouted = on_unrouted
        self._listeners: dict[str, list[asyncio.Queue[InboxEntry]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._unrouted: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start reading at the inbox's current end (older entries are not replayed)."""
        cursor = await self.engine.inbox_cursor(self.agent)
        self._task = asyncio.create_task(self._run(cursor), name=f"fanout-{self.agent[-8:]}")

    async def stop(self) -> None:
        """Stop reading; listeners get nothing more."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._unrouted):
            task.cancel()

    @contextlib.contextmanager
    def listen(self, thread_id: str) -> Iterator[asyncio.Queue[InboxEntry]]:
        """A queue of entries of one thread, for the duration of the block.

        Several listeners of one thread each get every entry (concurrent A2A
        tasks in one context); ``is_newest`` tells them apart.
        """
        queue: asyncio.Queue[InboxEntry] = asyncio.Queue()
        self._listeners.setdefault(thread_id, []).append(queue)
        try:
            yield queue
        finally:
            queues = self._listeners.get(thread_id, [])
            if queue in queues:
                queues.remove(queue)
            if not queues:
                self._listeners.pop(thread_id, None)

    def is_newest(self, thread_id: str, queue: asyncio.Queue[InboxEntry]) -> bool:
        """True when ``queue`` is the most recent listener of the thread."""
        queues = self._listeners.get(thread_id) or []
        return bool(queues) and queues[-1] is queue

    async def _run(self, cursor: int) -> None:
        while True:
            try:
                result = await self.engine.wait(
                    self.agent, "message", after=cursor, timeout_ms=_WAIT_MS, limit=100
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbox read for %s failed; retrying", self.agent)
                await asyncio.sleep(1)
                continue
            for item in result.entries:
                queues = self._listeners.get(item.entry.thread_id)
                if queues:
                    for queue in queues:
                        queue.put_nowait(item)
                elif self.on_unrouted is not None:
                    task = asyncio.create_task(self._unrouted_safely(item))
                    self._unrouted.add(task)
                    task.add_done_callback(self._unrouted.discard)
            cursor = result.cursor

    async def _unrouted_safely(self, item: InboxEntry) -> None:
        assert self.on_unrouted is not None
        try:
            await self.on_unrouted(item)
        except Exception:
            log.exception("handling inbox entry %s failed", item.cursor)
