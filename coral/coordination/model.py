"""Plain value objects of the coordination engine: threads, log entries, inbox.

All are frozen; operations return new values rather than mutating, which keeps
the rules in ``rules.py`` pure and easy to test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from coral.protocol.message import Message

ThreadState = Literal["open", "closed"]
WaitKind = Literal["mention", "message", "agent"]
WAIT_KINDS: tuple[WaitKind, ...] = ("mention", "message", "agent")

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Thread:
    """A thread: who is in it, whether it is open, and its strategy's state.

    ``participants`` is in join order with the creator first; ``last_seq`` is
    the sequence number of the newest log entry (0 for none yet).
    """

    id: str
    name: str
    creator: str
    participants: tuple[str, ...]
    strategy: str
    created_at: int
    session_id: str | None = None
    state: ThreadState = "open"
    summary: str | None = None
    closed_at: int | None = None
    strategy_options: JsonObject = field(default_factory=dict)
    strategy_state: JsonObject = field(default_factory=dict)
    last_seq: int = 0
    #: When the strategy asked to be woken (``Decision.wake_at_ms``), if ever.
    wake_at: int | None = None

    @property
    def is_open(self) -> bool:
        """True until the thread is closed."""
        return self.state == "open"

    def has_participant(self, agent: str) -> bool:
        """True when ``agent`` is currently a participant."""
        return agent in self.participants


@dataclass(frozen=True, slots=True)
class ThreadEntry:
    """One entry of a thread's ordered log: an agent message or a node event.

    ``seq`` counts from 1 per thread; ``recorded_at`` is the node's clock when
    it was appended. ``message`` is the full (signed, for agents) message.
    """

    thread_id: str
    seq: int
    message: Message
    recorded_at: int
    system: bool = False

    @property
    def sender(self) -> str:
        """The did of the agent (or node) that authored the entry."""
        return self.message.sender


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A thread entry delivered to one agent, at position ``cursor`` of its inbox."""

    agent: str
    cursor: int
    entry: ThreadEntry

    @property
    def mentioned(self) -> bool:
        """True when the entry mentions this inbox's agent."""
        return self.agent in self.entry.message.mentions


@dataclass(frozen=True, slots=True)
class WaitResult:
    """What a wait returns: matching entries and the cursor to resume from."""

    entries: tuple[InboxEntry, ...]
    cursor: int

    @property
    def timed_out(self) -> bool:
        """True when nothing matched before the timeout."""
        return not self.entries


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of a thread's log; ``next_after_seq`` is None on the last page."""

    entries: tuple[ThreadEntry, ...]
    next_after_seq: int | None
