"""In-memory twins of the coordination ports, for fast domain tests.

``MemoryCoordinationStore`` keeps the SQLite store's semantics: a
``ThreadWrite`` is checked whole before anything changes (ThreadExists,
ConcurrentUpdate, DuplicateMessage leave no trace), grants are delivered
before entries, each agent's inbox cursor counts from 1, and reads order
as the SQLite queries do. ``MemorySeenIds`` refuses an id it still
remembers. Both pass the same contract tests as the SQLite stores
(``tests/coordination/test_ports.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.model import InboxEntry, Thread, ThreadEntry, WaitKind
from coral.coordination.ports import ThreadWrite
from coral.protocol.errors import Replayed


@dataclass
class _StoredThread:
    thread: Thread
    #: The participant index ``list_threads`` reads (rewritten only when membership changed).
    members: tuple[str, ...]
    entries: dict[int, ThreadEntry] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _InboxRow:
    cursor: int
    thread_id: str
    entry_seq: int
    sender: str
    mentioned: bool


class MemoryCoordinationStore:
    """``CoordinationStore`` in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._threads: dict[str, _StoredThread] = {}
        self._message_ids: set[str] = set()
        self._inboxes: dict[str, list[_InboxRow]] = {}

    async def apply(self, write: ThreadWrite) -> list[InboxEntry]:
        """Write everything or nothing (see ``CoordinationStore.apply``).

        Raises:
            ThreadExists: the write creates a thread whose id is taken.
            ConcurrentUpdate: the stored thread moved past ``expected_last_seq``
                (or is gone), or an entry's seq is taken.
            DuplicateMessage: an entry's message id is already stored.
        """
        thread = write.thread
        stored = self._threads.get(thread.id)
        if write.expected_last_seq is None:
            if stored is not None:
                raise ThreadExists(f"thread {thread.id} already exists")
        elif stored is None or stored.thread.last_seq != write.expected_last_seq:
            raise ConcurrentUpdate(f"thread {thread.id} changed; retry")
        taken_seqs = set(stored.entries) if stored is not None else set()
        new_ids: set[str] = set()
        for pending in write.entries:
            message_id = pending.entry.message.id
            if message_id in self._message_ids or message_id in new_ids:
                raise DuplicateMessage("a message with this id is already stored")
            if pending.entry.seq in taken_seqs:
                raise ConcurrentUpdate(f"thread {thread.id} changed; retry")
            new_ids.add(message_id)
            taken_seqs.add(pending.entry.seq)

        # Checked: from here on nothing can fail.
        if stored is None:
            stored = self._threads[thread.id] = _StoredThread(thread, thread.participants)
        else:
            stored.thread = thread
            if write.membership_changed:
                stored.members = thread.participants
        for grant in write.grants:
            inbox = self._inboxes.setdefault(grant.agent, [])
            for seq in sorted(s for s in stored.entries if s <= grant.through_seq):
                entry = stored.entries[seq]
                mentioned = grant.agent in entry.message.mentions
                inbox.append(_InboxRow(len(inbox) + 1, thread.id, seq, entry.sender, mentioned))
        delivered: list[InboxEntry] = []
        for pending in write.entries:
            entry = pending.entry
            stored.entries[entry.seq] = entry
            self._message_ids.add(entry.message.id)
            for agent in pending.recipients:
                inbox = self._inboxes.setdefault(agent, [])
                row = _InboxRow(
                    len(inbox) + 1,
                    entry.thread_id,
                    entry.seq,
                    entry.sender,
                    agent in entry.message.mentions,
                )
                inbox.append(row)
                delivered.append(InboxEntry(agent, row.cursor, entry))
        return delivered

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None when no thread has that id."""
        stored = self._threads.get(thread_id)
        return stored.thread if stored is not None else None

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` currently participates in, oldest first (then in creation order)."""
        found = [
            s.thread
            for s in self._threads.values()
            if agent in s.members and (session_id is None or s.thread.session_id == session_id)
        ]
        return sorted(found, key=lambda t: t.created_at)  # stable: creation order breaks ties

    async def has_message(self, message_id: str) -> bool:
        """True when an entry with this message id is stored."""
        return message_id in self._message_ids

    async def history(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEntry]:
        """Entries with seq > ``after_seq``, in order, at most ``limit``."""
        stored = self._threads.get(thread_id)
        if stored is None:
            return []
        seqs = sorted(s for s in stored.entries if s > after_seq)[: max(limit, 0)]
        return [stored.entries[s] for s in seqs]

    async def inbox(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> list[InboxEntry]:
        """Inbox entries past cursor ``after`` that match the filter, in order."""
        found: list[InboxEntry] = []
        for row in self._inboxes.get(agent, [])[max(after, 0) :]:
            if len(found) >= limit:
                break
            if kind == "mention" and not row.mentioned:
                continue
            if kind == "agent" and row.sender != from_agent:
                continue
            entry = self._threads[row.thread_id].entries[row.entry_seq]
            found.append(InboxEntry(agent, row.cursor, entry))
        return found

    async def inbox_page(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> tuple[list[InboxEntry], int]:
        """``inbox(...)`` and the agent's newest cursor, read together."""
        return await self.inbox(agent, after, limit, kind, from_agent), len(
            self._inboxes.get(agent, [])
        )

    async def inbox_cursor(self, agent: str) -> int:
        """The newest cursor in ``agent``'s inbox (0 when empty)."""
        return len(self._inboxes.get(agent, []))

    async def due_threads(self, now_ms: int) -> list[str]:
        """Ids of open threads whose strategy asked to be woken at or before now."""
        due = [
            (s.thread.wake_at, s.thread.id)
            for s in self._threads.values()
            if s.thread.wake_at is not None and s.thread.wake_at <= now_ms and s.thread.is_open
        ]
        return [thread_id for _, thread_id in sorted(due)]

    async def next_wake_at(self) -> int | None:
        """The earliest wake time any open thread asked for, or None."""
        wakes = [
            s.thread.wake_at
            for s in self._threads.values()
            if s.thread.wake_at is not None and s.thread.is_open
        ]
        return min(wakes, default=None)


class MemorySeenIds:
    """``SeenIds`` in a dictionary: message id -> when it may be forgotten (ms)."""

    def __init__(self) -> None:
        self._forget_at: dict[str, int] = {}

    async def remember(self, message_id: str, forget_at: int) -> None:
        """Record ``message_id`` until ``forget_at``.

        Raises:
            Replayed: the id is still remembered (not yet pruned).
        """
        if message_id in self._forget_at:
            raise Replayed(f"message id {message_id} was already accepted")
        self._forget_at[message_id] = forget_at

    async def prune(self, now_ms: int) -> int:
        """Forget ids whose window ended at or before ``now_ms``; returns how many."""
        done = [m for m, at in self._forget_at.items() if at <= now_ms]
        for message_id in done:
            del self._forget_at[message_id]
        return len(done)
