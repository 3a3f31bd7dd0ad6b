"""In-process wake-ups for agents blocked in ``wait``, and per-key locks.

The inbox itself lives in the store; these signals say "look again", and
after a commit they also carry the inbox rows just written, so a waiter that
knows its inbox up to the first of them takes them from memory instead of
reading the store. A waiter registers before it reads the store, so an append
that lands between the read and the sleep still wakes it: no polling, and no
lost wake-ups.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable, Iterable, Iterator
from contextlib import contextmanager

from coral.coordination.errors import TooManyWaits, WaitBudgetExhausted
from coral.coordination.model import InboxEntry

#: Most delivered rows a wait holds in memory before it falls back to reading the store.
MAX_PENDING = 1000


class InboxListener:
    """One active wait: its wake-up event, and entries delivered to it from memory.

    ``head`` is the newest inbox cursor the waiter has accounted for (read from
    the store, or taken from deliveries), or None when unknown. Deliveries that
    continue exactly from ``head`` can be served without reading the store; a
    gap, or a bare ``notify``, sends the waiter back to the store.
    """

    __slots__ = ("event", "head", "park_as", "pending", "stale")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.head: int | None = None
        self.pending: list[InboxEntry] = []
        self.stale = False
        #: Set by a wait about to return: what the next wait must ask for to take this over.
        self.park_as: Hashable | None = None

    def reset(self) -> None:
        """Forget what memory holds: the next look must read the store."""
        self.head = None
        self.pending = []
        self.stale = False

    def known(self, head: int) -> None:
        """The store was read through cursor ``head``: drop deliveries it already covered."""
        self.head = head
        self.pending = [e for e in self.pending if e.cursor > head]

    def take(self) -> list[InboxEntry] | None:
        """Delivered entries continuing from ``head`` (head moves past them), or None on a gap."""
        if self.stale or self.head is None:
            return None
        head, taken = self.head, []
        for item in self.pending:
            if item.cursor <= head:
                continue
            if item.cursor != head + 1:
                return None
            head = item.cursor
            taken.append(item)
        self.head, self.pending = head, []
        return taken


class InboxSignals:
    """The active waits, grouped by agent, with a cap per agent.

    A wait that ends knowing its inbox (``park_as`` set) stays parked for
    ``park_s`` seconds, still collecting deliveries, so the agent's next wait
    with the same filter from the returned cursor (a long-poll or SSE loop)
    continues from memory instead of reading the store. Parked waits do not
    count against the cap; only the latest one per agent is kept.
    """

    def __init__(
        self,
        max_waits_per_agent: int = 8,
        park_s: float = 5.0,
        max_waits_total: int | None = None,
    ) -> None:
        self.max_waits_per_agent = max_waits_per_agent
        self.park_s = park_s
        #: Node-wide cap (each open wait holds a connection, so a file descriptor); None: none.
        self.max_waits_total = max_waits_total
        self._waiters: dict[str, set[InboxListener]] = {}
        self._parked: dict[str, tuple[InboxListener, Hashable, float]] = {}
        self._total = 0

    @contextmanager
    def listen(self, agent: str, resume: Hashable | None = None) -> Iterator[InboxListener]:
        """Register a wait for ``agent`` for the duration of the block.

        With ``resume`` equal to a parked wait's ``park_as``, that wait's
        listener (and what it collected) is taken over. Leaving the block, also
        by an exception or cancellation, unregisters the wait; a listener whose
        ``park_as`` was set and that knows its inbox is then parked.

        Raises:
            WaitBudgetExhausted: the node holds ``max_waits_total`` waits (retryable).
            TooManyWaits: ``agent`` already has ``max_waits_per_agent`` waits.
        """
        if self.max_waits_total is not None and self._total >= self.max_waits_total:
            raise WaitBudgetExhausted(
                f"the node holds {self._total} open waits, its budget; retry shortly"
            )
        waiters = self._waiters.setdefault(agent, set())
        if len(waiters) >= self.max_waits_per_agent:
            if not waiters:
                del self._waiters[agent]
            raise TooManyWaits(f"{agent} already has {self.max_waits_per_agent} waits in progress")
        listener = self._unpark(agent, resume) or InboxListener()
        waiters.add(listener)
        self._total += 1
        try:
            yield listener
        finally:
            self._total -= 1
            waiters.discard(listener)
            if not waiters:
                del self._waiters[agent]
            if listener.park_as is not None and listener.head is not None and not listener.stale:
                self._parked[agent] = (listener, listener.park_as, time.monotonic() + self.park_s)

    def _unpark(self, agent: str, resume: Hashable | None) -> InboxListener | None:
        parked = self._parked.pop(agent, None)
        if parked is None or resume is None:
            return None
        listener, key, until = parked
        if key != resume or time.monotonic() > until:
            return None
        listener.park_as = None
        return listener

    def _listeners(self, agent: str) -> list[InboxListener]:
        found = list(self._waiters.get(agent, ()))
        parked = self._parked.get(agent)
        if parked is not None:
            if time.monotonic() > parked[2]:
                del self._parked[agent]
            else:
                found.append(parked[0])
        return found

    @property
    def total_waits(self) -> int:
        """How many waits are in progress on the node."""
        return self._total

    def notify(self, agents: Iterable[str]) -> None:
        """Wake every wait of each of ``agents``; they look in the store again."""
        for agent in set(agents):
            for listener in self._listeners(agent):
                listener.stale = True
                listener.event.set()

    def notify_all(self) -> None:
        """Wake every wait (parked ones too): each looks in the store again from its cursor.

        For a wake-up feed that may have missed notices (a reconnect), this
        turns "something may have arrived" into a catch-up read by cursor.
        """
        self.notify([*self._waiters, *self._parked])

    def deliver(self, entries: Iterable[InboxEntry]) -> None:
        """Hand just-committed inbox rows to the waits of their agents, and wake them."""
        for item in entries:
            for listener in self._listeners(item.agent):
                if not listener.stale:
                    if len(listener.pending) < MAX_PENDING:
                        listener.pending.append(item)
                    else:  # a slow consumer: stop holding rows for it, it reads the store
                        listener.stale, listener.pending = True, []
                listener.event.set()

    def active_waits(self, agent: str) -> int:
        """How many waits ``agent`` has in progress."""
        return len(self._waiters.get(agent, ()))


class KeyedLocks:
    """An ``asyncio.Lock`` per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> _Held:
        """Hold the lock for ``key`` for the duration of an ``async with`` block.

        Cancellation: cancelled while waiting for the lock, or inside the
        block, the lock is released (or never taken) and the key's entry is
        dropped once nobody holds or awaits it.
        """
        return _Held(self, key)

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Held:
    """One ``KeyedLocks.hold`` block (a plain class: this is on every write's path)."""

    __slots__ = ("_key", "_lock", "_owner")

    def __init__(self, owner: KeyedLocks, key: str) -> None:
        self._owner = owner
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        locks = self._owner._locks
        lock, users = locks.get(self._key) or (asyncio.Lock(), 0)
        locks[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._owner._leave(self._key)
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()
            self._owner._leave(self._key)
