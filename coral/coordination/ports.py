"""What the coordination service needs from storage (``CoordinationStore``).

The service decides everything (sequence numbers, recipients, new thread
state); a store only has to write one ``ThreadWrite`` atomically and answer a
few reads. ``coral.store.coordination_sqlite`` (and ``seen_sqlite``) implement
the ports over the node database; ``coral.coordination.memory`` holds the
in-memory twins fast tests use. Both pass ``tests/coordination/test_ports.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coral.coordination.model import InboxEntry, Thread, ThreadEntry, WaitKind


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A log entry to append, and the agents whose inbox receives it."""

    entry: ThreadEntry
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryGrant:
    """Deliver entries 1..``through_seq`` of the thread to ``agent``'s inbox (a joiner)."""

    agent: str
    through_seq: int


@dataclass(frozen=True, slots=True)
class ThreadWrite:
    """Everything one operation writes, to be applied in ONE transaction.

    ``expected_last_seq`` None means the thread is new (it must not exist);
    otherwise the stored thread must still have that ``last_seq`` (optimistic
    concurrency). Grants are applied before entries, so a joiner sees the old
    history before the event announcing it.
    """

    thread: Thread
    expected_last_seq: int | None
    entries: tuple[PendingEntry, ...] = ()
    grants: tuple[HistoryGrant, ...] = ()
    #: False when the participants are unchanged, so the store may skip rewriting them.
    membership_changed: bool = True


class CoordinationStore(Protocol):
    """Persistence for threads, their logs and per-agent inboxes."""

    async def apply(self, write: ThreadWrite) -> list[InboxEntry]:
        """Write everything or nothing.

        Grants are delivered before entries; each agent's inbox cursor counts
        up from 1. Returns the inbox rows written for ``write.entries`` (history
        grants excluded), so waiting agents can be handed them without a read.

        Raises:
            ThreadExists: the write creates a thread whose id is taken.
            ConcurrentUpdate: the stored thread's ``last_seq`` is not
                ``expected_last_seq`` (or the thread is gone), or an entry's seq is taken.
            DuplicateMessage: an entry's message id is already stored.
        """
        ...

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None when no thread has that id."""
        ...

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` currently participates in, oldest first (ties: creation order)."""
        ...

    async def has_message(self, message_id: str) -> bool:
        """True when an entry with this message id is stored."""
        ...

    async def history(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEntry]:
        """Entries with seq > ``after_seq``, in order, at most ``limit``."""
        ...

    async def inbox(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> list[InboxEntry]:
        """Inbox entries past cursor ``after`` that match the filter, in order."""
        ...

    async def inbox_page(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> tuple[list[InboxEntry], int]:
        """Like ``inbox``, plus the agent's newest cursor at the time of the same read."""
        ...

    async def inbox_cursor(self, agent: str) -> int:
        """The newest cursor in ``agent``'s inbox (0 when empty)."""
        ...

    async def due_threads(self, now_ms: int) -> list[str]:
        """Ids of open threads whose strategy asked to be woken at or before now.

        Ordered by wake time, then id.
        """
        ...

    async def next_wake_at(self) -> int | None:
        """The earliest wake time any open thread asked for, or None."""
        ...


class WriteScope(Protocol):
    """A thread write's open transaction, as a write hook sees it.

    Another package's store on the same database joins the transaction through
    ``transaction`` (an opaque handle only stores understand), so its rows commit
    with the thread write or not at all: on SQLite the open connection, on
    PostgreSQL a collector of statements the write runs before it commits
    (``coral.store.postgres.DeferredStatements``).
    """

    @property
    def transaction(self) -> object:
        """The store's native transaction handle (for another store on the same database)."""
        ...

    def entries_through(self, thread_id: str, through_seq: int) -> list[ThreadEntry]:
        """Entries with seq <= ``through_seq``, in order, read inside the transaction.

        Hooks ask only for the written thread, through at most its largest
        history grant (PostgreSQL reads exactly that ahead of the hooks).
        """
        ...


#: Runs synchronously inside every thread write's transaction, after its rows;
#: raising aborts the write.
WriteHook = Callable[[ThreadWrite, WriteScope], None]


class ReplicatedThreads(Protocol):
    """What federation needs from coordination storage to replicate threads across nodes."""

    def add_write_hook(self, hook: WriteHook) -> None:
        """Run ``hook`` inside every later thread write's transaction."""
        ...

    async def mirror(
        self,
        thread: Thread,
        entries: Sequence[tuple[ThreadEntry, Sequence[str]]],
        grants: Sequence[HistoryGrant] = (),
        first_time: Callable[[WriteScope], bool] | None = None,
    ) -> list[str] | None:
        """Store entries of a thread another node owns, for this node's participants.

        Each entry comes with the local agents whose inbox receives it; grants
        deliver the history to a local agent who just joined. ``first_time``
        runs in the same transaction and returns False for a delivery seen
        before (or, on PostgreSQL, adds a guard statement to the scope's
        transaction that finds it), which then changes nothing and makes this
        return None. Otherwise returns the agents whose inbox grew.
        """
        ...


class SeenIds(Protocol):
    """Ids of commands already applied, kept for the replay window (persistent)."""

    async def remember(self, message_id: str, forget_at: int) -> None:
        """Record ``message_id`` until ``forget_at`` (ms).

        Raises:
            Replayed: the id is already remembered (a replay).
        """
        ...

    async def prune(self, now_ms: int) -> int:
        """Forget ids whose window ended at or before ``now_ms``; returns how many."""
        ...
