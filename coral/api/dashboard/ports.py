"""What the operator dashboard reads: node-wide views no per-agent service answers.

The domain services answer questions for one agent at a time (an agent sees
only its own threads); an operator needs the whole node at a glance.
``DashboardReads`` is that read-only view; ``coral.store.dashboard_sqlite``
implements it over the node's and the ledger's SQLite files. Views of
components a node does not run (ledger, teams) come back empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """One thread as the operator sees it (no per-agent filtering)."""

    id: str
    name: str
    creator: str
    participants: list[str]
    state: str
    summary: str | None
    strategy: str
    created_at: int
    closed_at: int | None
    last_seq: int
    team_id: str | None


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One entry of a thread log: the stored wire message plus its position."""

    thread_id: str
    seq: int
    system: bool
    recorded_at: int
    message: dict[str, Any]


class DashboardReads(Protocol):
    """Read-only, node-wide views for the dashboard; nothing here writes."""

    async def recent_threads(self, limit: int) -> list[ThreadRow]:
        """The most recently active threads of every agent, newest activity first."""
        ...

    async def recent_entries(self, thread_id: str, limit: int) -> list[EntryRow]:
        """The last ``limit`` entries of one thread, oldest first."""
        ...

    async def coordination_totals(self) -> dict[str, int]:
        """Counts: ``threads_open``, ``threads_closed``, ``entries``."""
        ...

    async def recent_team_ids(self, limit: int) -> list[str]:
        """Ids of the most recently proposed teams, newest first."""
        ...

    async def ledger_accounts(self, limit: int) -> list[dict[str, Any]]:
        """Accounts with posted balance and pending amounts, largest balance first."""
        ...

    async def ledger_pending(self, limit: int) -> list[dict[str, Any]]:
        """Open escrow holds, soonest expiry first."""
        ...

    async def ledger_recent_transfers(self, limit: int) -> list[dict[str, Any]]:
        """The newest transfers of every account, newest first."""
        ...

    async def close(self) -> None:
        """Release any connection the views opened (safe to call twice)."""
        ...
