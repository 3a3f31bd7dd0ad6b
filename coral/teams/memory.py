"""In-memory twins of the teams ports, for fast domain tests.

``MemoryTeamStore`` and ``MemoryTeamIndex`` keep the SQLite store's
semantics: the same typed conflicts, optimistic appends, ordering, and
nothing written when a call is refused. They pass the same contract tests
(``tests/store/test_port_contracts_teams.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coral.protocol.errors import Conflict, NotFound, Replayed
from coral.protocol.message import Message
from coral.teams.documents import KeyEpoch, SignedTeamDocument, TeamCharter, TeamRecord
from coral.teams.lifecycle import EscrowHold, EscrowOutcome
from coral.teams.messages import team_message_epoch


@dataclass
class _Team:
    charter: TeamCharter
    documents: list[SignedTeamDocument] = field(default_factory=list)
    escrow: EscrowHold | None = None


class MemoryTeamStore:
    """``TeamStore`` in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._teams: dict[str, _Team] = {}
        self._posts: dict[str, tuple[str, Message]] = {}

    def _team(self, team_id: str) -> _Team:
        team = self._teams.get(team_id)
        if team is None:
            raise NotFound(f"no team {team_id}", reason="team_not_found")
        return team

    async def create_team(self, charter: TeamCharter) -> None:
        """Store a new team's charter; Conflict if the team id exists."""
        if charter.team_id in self._teams:
            raise Conflict(f"team {charter.team_id} already exists", reason="team_exists")
        self._teams[charter.team_id] = _Team(charter)

    async def load_record(self, team_id: str) -> TeamRecord:
        """The team's charter and documents in acceptance order; NotFound if unknown."""
        team = self._team(team_id)
        return TeamRecord.model_construct(charter=team.charter, documents=tuple(team.documents))

    async def document_count(self, team_id: str) -> int:
        """How many documents the team's record holds; NotFound if unknown."""
        return len(self._team(team_id).documents)

    async def append_document(
        self,
        team_id: str,
        expected_count: int,
        document: SignedTeamDocument,
        *,
        escrow_hold: str | None = None,
    ) -> None:
        """Append as document number ``expected_count``; Conflict if another writer was first."""
        team = self._team(team_id)
        count = len(team.documents)
        if count != expected_count:
            raise Conflict(
                f"team {team_id} changed ({count} documents, expected {expected_count})",
                reason="team_changed",
            )
        if escrow_hold is not None and team.escrow is not None:
            raise Conflict(f"team {team_id} already holds a budget", reason="team_changed")
        team.documents.append(document)
        if escrow_hold is not None:
            team.escrow = EscrowHold(hold_id=escrow_hold, outcome="held")

    async def load_escrow(self, team_id: str) -> EscrowHold | None:
        """The team's budget hold, if one was reserved."""
        team = self._teams.get(team_id)
        return team.escrow if team is not None else None

    async def settle_escrow(self, team_id: str, outcome: EscrowOutcome) -> None:
        """Record that the hold was paid out or released (only from 'held')."""
        team = self._teams.get(team_id)
        if team is None or team.escrow is None or team.escrow.outcome != "held":
            raise Conflict(f"team {team_id} holds no open escrow", reason="escrow_settled")
        team.escrow = EscrowHold(hold_id=team.escrow.hold_id, outcome=outcome)

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams past their deadline whose budget hold is still open, earliest first."""
        due = [
            (team.charter.deadline_ms, team_id)
            for team_id, team in self._teams.items()
            if team.escrow is not None
            and team.escrow.outcome == "held"
            and team.charter.deadline_ms <= now_ms
        ]
        return [team_id for _, team_id in sorted(due)]

    async def latest_key_epoch(self, team_id: str) -> KeyEpoch | None:
        """The newest key epoch document of the team, or None."""
        team = self._teams.get(team_id)
        epochs = [d for d in team.documents if isinstance(d, KeyEpoch)] if team else []
        return epochs[-1] if epochs else None

    async def append_thread_message(self, team_id: str, message: Message) -> None:
        """Store a team post as received; refuses anything but an encrypted team message."""
        message_team, _ = team_message_epoch(message)
        if message_team != team_id or message.thread is None:
            raise Conflict("message is not a post of this team's thread", reason="wrong_team")
        if message.id in self._posts:
            raise Replayed(f"message {message.id} is already stored")
        self._posts[message.id] = (team_id, message)

    async def thread_messages(self, team_id: str, thread: str) -> list[Message]:
        """The stored posts of one team thread, oldest first."""
        posts = [m for t, m in self._posts.values() if t == team_id and m.thread == thread]
        return sorted(posts, key=lambda m: (m.created_at, m.id))


class MemoryTeamIndex:
    """``TeamIndex`` in dictionaries; nothing survives the process."""

    def __init__(self) -> None:
        self._bound: dict[str, str] = {}
        self._parties: set[tuple[str, str]] = set()

    async def bind_thread(self, thread_id: str, team_id: str) -> None:
        """Bind ``thread_id`` to ``team_id``; Conflict if the thread is bound already."""
        if thread_id in self._bound:
            raise Conflict(f"thread {thread_id} is already a team thread", reason="bound")
        self._bound[thread_id] = team_id

    async def team_of_thread(self, thread_id: str) -> str | None:
        """The team a thread is bound to, or None for an ordinary thread."""
        return self._bound.get(thread_id)

    async def threads_of_team(self, team_id: str) -> list[str]:
        """Every thread bound to the team, in id order."""
        return sorted(t for t, team in self._bound.items() if team == team_id)

    async def add_party(self, team_id: str, did: str) -> None:
        """Remember that ``did`` takes part in the team (idempotent)."""
        self._parties.add((did, team_id))

    async def is_party(self, team_id: str, did: str) -> bool:
        """True when ``did`` is the initiator, an invitee or a member of the team."""
        return (did, team_id) in self._parties

    async def teams_of(self, did: str) -> list[str]:
        """Ids of the teams ``did`` takes part in, in id order."""
        return sorted(team for party, team in self._parties if party == did)
