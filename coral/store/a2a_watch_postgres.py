"""Wake-ups for A2A task changes across replicas (LISTEN/NOTIFY on PostgreSQL).

``PostgresA2ATaskRecords.save_task`` sends, inside its transaction, a notice
on the ``a2a_tasks`` channel naming the task (PostgreSQL delivers it only
once the write commits). Each replica runs one ``PostgresTaskWatch`` that
LISTENs (on a connection of its own, or on the process's shared
``PostgresListener``) and sets the events of local watchers of
that task; a watcher then re-reads the task. Notices are hints, never data:
after any (re)connect every watcher is woken to re-read, so a notice lost
while the connection was down loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from coral.store.listen_postgres import PostgresListener, Subscription, follow

#: The NOTIFY channel of A2A task writes (payload: the task id).
CHANNEL = "a2a_tasks"


class PostgresTaskWatch:
    """``coral.api.a2a.tasks.TaskWatch`` over LISTEN/NOTIFY (``run`` until cancelled)."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        retry_s: float = 1.0,
        listener: PostgresListener | None = None,
    ) -> None:
        if (dsn is None) == (listener is None):
            raise ValueError("give exactly one of dsn and listener")
        self._dsn = dsn
        self._listener = listener
        self._retry_s = retry_s
        self._watchers: dict[str, set[asyncio.Event]] = {}
        #: Set while a LISTEN connection is up (tests and start-up wait on it).
        self.listening = asyncio.Event()

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever ``task_id`` may have changed, for the duration of the block.

        Watch first, then read the task: a change committed after the read
        sets the event. The caller clears it before each re-read.
        """
        changed = asyncio.Event()
        self._watchers.setdefault(task_id, set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._watchers.get(task_id)
            if watchers is not None:
                watchers.discard(changed)
                if not watchers:
                    del self._watchers[task_id]

    def _wake_all(self) -> None:
        for watchers in self._watchers.values():
            for changed in watchers:
                changed.set()

    def _connected(self) -> None:
        self.listening.set()
        self._wake_all()  # what committed before LISTEN took effect was never announced

    def _on_notice(self, conn: object, pid: int, channel: str, payload: str) -> None:
        for changed in self._watchers.get(payload, ()):
            changed.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection.

        Cancellation closes the connection and propagates. Connection
        failures are logged and retried every ``retry_s`` seconds; each
        (re)connect wakes every watcher to re-read. With the shared listener,
        it reconnects and cancellation leaves it.
        """
        sub = Subscription(CHANNEL, self._on_notice, self._connected, self.listening.clear)
        await follow(sub, self._listener, self._dsn, self._retry_s)
