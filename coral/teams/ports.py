"""What the teams use cases need from storage and from the ledger.

``TeamStore`` (team records, documents, escrow holds, encrypted thread posts)
and ``TeamEscrow`` (budgets) are defined with the lifecycle that drives them;
``TeamIndex`` answers the lookups a record cannot answer fast. SQLite
implements both in ``coral.store.teams_sqlite``, PostgreSQL (shared by
replicas) in ``coral.store.teams_postgres``; their in-memory twins are in
``coral.teams.memory`` (the escrow's real implementation is
``coral.ledger.team_escrow``).
"""

from __future__ import annotations

from typing import Protocol

from coral.teams.lifecycle import TeamEscrow, TeamStore

__all__ = ["TeamEscrow", "TeamIndex", "TeamStore"]


class TeamIndex(Protocol):
    """Thread bindings and team parties, kept beside the team records."""

    async def bind_thread(self, thread_id: str, team_id: str) -> None:
        """Reserve ``thread_id`` for ``team_id`` (at most one team per thread).

        Raises:
            Conflict: the thread id is already bound (reason ``bound``).
        """
        ...

    async def team_of_thread(self, thread_id: str) -> str | None:
        """The team a thread is bound to, if any."""
        ...

    async def threads_of_team(self, team_id: str) -> list[str]:
        """Threads bound to ``team_id``, in id order."""
        ...

    async def add_party(self, team_id: str, did: str) -> None:
        """Record that ``did`` may read ``team_id`` (initiator, invitee, member); idempotent."""
        ...

    async def is_party(self, team_id: str, did: str) -> bool:
        """Whether ``did`` may read ``team_id``."""
        ...

    async def teams_of(self, did: str) -> list[str]:
        """Teams ``did`` is a party of, in id order."""
        ...
