"""What the teams use cases need from storage and from the ledger.

``TeamStore`` (team records, documents, escrow holds, encrypted thread posts)
and ``TeamEscrow`` (budgets) are defined with the lifecycle that drives them;
``TeamIndex`` answers the lookups a record cannot answer fast.
"""

from __future__ import annotations

from typing import Protocol

from coral.teams.lifecycle import TeamEscrow, TeamStore

__all__ = ["TeamEscrow", "TeamIndex", "TeamStore"]


class TeamIndex(Protocol):
    """Thread bindings and team parties, kept beside the team records."""

    async def bind_thread(self, thread_id: str, team_id: str) -> None:
        """Reserve ``thread_id`` for ``team_id``.

        Raises:
            Conflict: the thread id is already bound to another team.
        """
        ...

    async def team_of_thread(self, thread_id: str) -> str | None:
        """The team a thread is bound to, if any."""
        ...

    async def threads_of_team(self, team_id: str) -> list[str]:
        """Threads bound to ``team_id``."""
        ...

    async def add_party(self, team_id: str, did: str) -> None:
        """Record that ``did`` may read ``team_id`` (initiator, invitee, member)."""
        ...

    async def is_party(self, team_id: str, did: str) -> bool:
        """Whether ``did`` may read ``team_id``."""
        ...

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams whose escrow hold is past its deadline at ``now_ms``."""
        ...

    async def teams_of(self, did: str) -> list[str]:
        """Teams ``did`` is a party of."""
        ...
