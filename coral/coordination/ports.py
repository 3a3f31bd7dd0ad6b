"""What the coordination service needs from storage (``CoordinationStore``).

The service decides everything (sequence numbers, recipients, new thread
state); a store only has to write one ``ThreadWrite`` atomically and answer a
few reads. ``coral.store.coordination_sqlite`` is the default implementation.
"""

from __future__ import annotations

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
        """Write everything or nothing; raise ThreadExists, ConcurrentUpdate or
        DuplicateMessage when the write conflicts with what is stored.

        Returns the inbox rows written for ``write.entries`` (history grants
        excluded), so waiting agents can be handed them without a read.
        """
        ...

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None when no thread has that id."""
        ...

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` currently participates in, oldest first."""
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
        """Ids of open threads whose strategy asked to be woken at or before now."""
        ...

    async def next_wake_at(self) -> int | None:
        """The earliest wake time any open thread asked for, or None."""
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
        """Forget ids whose window ended before ``now_ms``; returns how many."""
        ...
