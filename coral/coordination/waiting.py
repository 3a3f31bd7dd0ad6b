"""In-process wake-ups for agents blocked in ``wait``, and per-key locks.

The inbox itself lives in the store; these signals only say "look again".
A waiter registers before it reads the store, so an append that lands between
the read and the sleep still wakes it: no polling, and no lost wake-ups.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

from coral.coordination.errors import TooManyWaits, WaitBudgetExhausted


class InboxSignals:
    """One ``asyncio.Event`` per active wait, grouped by agent.

    Two caps: ``max_waits_per_agent`` per key, and ``max_waits_total`` over
    the whole node (each open wait holds a connection, so a file descriptor;
    None means no node-wide cap).
    """

    def __init__(self, max_waits_per_agent: int = 8, max_waits_total: int | None = None) -> None:
        self.max_waits_per_agent = max_waits_per_agent
        self.max_waits_total = max_waits_total
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._total = 0

    @contextmanager
    def listen(self, agent: str) -> Iterator[asyncio.Event]:
        """Register a wait for ``agent``; the slot is freed when the block exits.

        Raises TooManyWaits when the agent already has its maximum, and
        WaitBudgetExhausted (retryable) when the node has its maximum.
        """
        if self.max_waits_total is not None and self._total >= self.max_waits_total:
            raise WaitBudgetExhausted(
                f"the node holds {self._total} open waits, its budget; retry shortly"
            )
        waiters = self._waiters.setdefault(agent, set())
        if len(waiters) >= self.max_waits_per_agent:
            raise TooManyWaits(f"{agent} already has {self.max_waits_per_agent} waits in progress")
        event = asyncio.Event()
        waiters.add(event)
        self._total += 1
        try:
            yield event
        finally:
            self._total -= 1
            waiters.discard(event)
            if not waiters:
                del self._waiters[agent]

    @property
    def total_waits(self) -> int:
        """How many waits are in progress on the node."""
        return self._total

    def notify(self, agents: Iterable[str]) -> None:
        """Wake every wait of each of ``agents``."""
        for agent in set(agents):
            for event in self._waiters.get(agent, ()):
                event.set()

    def active_waits(self, agent: str) -> int:
        """How many waits ``agent`` has in progress."""
        return len(self._waiters.get(agent, ()))


class KeyedLocks:
    """An ``asyncio.Lock`` per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock for ``key`` for the duration of the block."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
