"""The team lifecycle service: validate, persist, and move the budget through escrow.

``TeamLifecycle`` is the one async service a node (API or SDK) calls. It
replays the stored record, applies the new document with the live checks,
appends it with optimistic concurrency (a racing writer gets Conflict and
retries on the new state), and drives the escrow seam:

- the first accepted invitation reserves the whole budget from the initiator;
- a ``goal_met`` dissolution pays the signed payouts from that hold;
- a cancellation, or a deadline passing undissolved, releases it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from coral.protocol.message import Message
from coral.protocol.tasks import run_to_completion
from coral.teams.documents import (
    Acceptance,
    Dissolution,
    KeyEpoch,
    SignedTeamDocument,
    TeamCharter,
    TeamRecord,
)
from coral.teams.record import verify_team
from coral.teams.state import TeamState

EscrowOutcome = Literal["held", "paid", "released"]


class TeamEscrow(Protocol):
    """The ledger seam: a two-phase hold on the team budget (implemented by coral.ledger).

    Implementations must make each call idempotent per ``hold_id``: the
    service may repeat a settle after a crash between ledger and store.
    """

    async def reserve_budget(
        self, team_id: str, payer_did: str, amount: int, currency: str, timeout_ms: int
    ) -> str:
        """Reserve ``amount`` from ``payer_did``; return the hold id. Voids itself at timeout.

        Raises:
            LedgerError: the ledger refused the hold (e.g. ``ExceedsCredits``:
                the payer cannot fund it, ``UnknownAccount``: no account).
        """
        ...

    async def pay_members(self, team_id: str, hold_id: str, shares: dict[str, int]) -> None:
        """Post the hold: pay each did its share, return the remainder to the payer.

        Raises:
            LedgerError: the ledger refused the post or a payment (e.g. the
                hold already expired: ``PendingExpired``).
        """
        ...

    async def release(self, team_id: str, hold_id: str) -> None:
        """Void the hold; the payer gets the whole amount back.

        A hold already resolved or expired counts as released, not an error.

        Raises:
            LedgerError: any other refusal of the void.
        """
        ...


@dataclass(frozen=True, slots=True)
class EscrowHold:
    """The team's budget hold as the store remembers it."""

    hold_id: str
    outcome: EscrowOutcome


class TeamStore(Protocol):
    """Persistence of team records, escrow holds and encrypted team posts.

    Implemented by ``coral.store.teams_sqlite.SqliteTeamStore`` and
    ``coral.store.teams_postgres.PostgresTeamStore``; the in-memory
    twin is ``coral.teams.memory.MemoryTeamStore``.
    """

    async def create_team(self, charter: TeamCharter) -> None:
        """Store a new team's charter.

        Raises:
            Conflict: a team with this id exists (reason ``team_exists``).
        """
        ...

    async def load_record(self, team_id: str) -> TeamRecord:
        """The team's charter and documents in acceptance order.

        Raises:
            NotFound: no team has this id (reason ``team_not_found``).
        """
        ...

    async def document_count(self, team_id: str) -> int:
        """How many documents the team's record holds (cheaper than loading it).

        Processes sharing one store compare it with what they cached.

        Raises:
            NotFound: no team has this id (reason ``team_not_found``).
        """
        ...

    async def append_document(
        self,
        team_id: str,
        expected_count: int,
        document: SignedTeamDocument,
        *,
        escrow_hold: str | None = None,
    ) -> None:
        """Append as document number ``expected_count`` (and record a new hold), atomically.

        Raises:
            NotFound: no team has this id.
            Conflict: another writer appended first, or ``escrow_hold`` is given and
                the team already holds a budget (reason ``team_changed``); nothing
                is written.
        """
        ...

    async def load_escrow(self, team_id: str) -> EscrowHold | None:
        """The team's budget hold, if one was reserved."""
        ...

    async def settle_escrow(self, team_id: str, outcome: EscrowOutcome) -> None:
        """Record that the hold was paid out or released (only from ``held``).

        Raises:
            Conflict: the team holds no open escrow (reason ``escrow_settled``).
        """
        ...

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams whose budget hold is still open at their deadline or past it.

        Earliest deadline first, ties by team id.
        """
        ...

    async def latest_key_epoch(self, team_id: str) -> KeyEpoch | None:
        """The newest key epoch document of the team (what a member unseals), or None."""
        ...

    async def append_thread_message(self, team_id: str, message: Message) -> None:
        """Store a team post as received (ciphertext only).

        Raises:
            InvalidTeamDocument: the message is not an encrypted team message.
            Conflict: the message belongs to another team or has no thread
                (reason ``wrong_team``).
            Replayed: a message with this id is already stored.
        """
        ...

    async def thread_messages(self, team_id: str, thread: str) -> list[Message]:
        """The stored posts of one team thread, by ``created_at`` then message id."""
        ...


class TeamLifecycle:
    """Validates and persists team documents and keeps the escrow in step with them."""

    def __init__(self, store: TeamStore, escrow: TeamEscrow | None = None) -> None:
        self._store = store
        self._escrow = escrow

    async def propose(self, charter: TeamCharter, now_ms: int) -> TeamState:
        """Verify and store a new charter; returns the empty team's state.

        Raises:
            SignatureError: the charter is not signed by its initiator.
            FromFuture: the charter is dated in the future.
            Conflict: the team id exists (``team_exists``).
            StorageUnavailable: the store could not be written.
        """
        state = TeamState(charter, now_ms)
        await self._store.create_team(charter)
        return state

    async def state(self, team_id: str, now_ms: int) -> TeamState:
        """The team's current state, re-verified from the stored record.

        Raises:
            NotFound: no team ``team_id`` (``team_not_found``).
            StorageUnavailable: the store could not be read.
        """
        return verify_team(await self._store.load_record(team_id), now_ms)

    async def submit(self, team_id: str, document: SignedTeamDocument, now_ms: int) -> TeamState:
        """Apply ``document`` to the team and persist it; raise (storing nothing) if refused.

        The first accepted invitation reserves the budget before the document
        is appended; should the append fail, that hold is voided again (and
        the append's error raised). A dissolution settles the escrow after it
        is appended.

        Raises:
            NotFound: no team ``team_id`` (``team_not_found``).
            CoralError: the document's refusal by the team rules (the
                ``coral.teams.errors`` classes, ``SignatureError``, ...).
            Conflict: another writer appended first (``team_changed``);
                retry on the new state.
            LedgerError: the escrow refused the budget hold (e.g.
                ``ExceedsCredits``) or a dissolution's payout; a refused
                payout leaves the dissolution stored and the hold open.
            StorageUnavailable: the store or the ledger could not be written.

        Cancellation: cancelled while the record is read, nothing is written.
        From the budget reservation on, the writes (hold, append, the void of
        a hold whose append failed, a dissolution's settlement) run as one
        step that finishes before ``CancelledError`` is raised, so no hold is
        left unrecorded and no stored dissolution is left unsettled by a
        cancel.
        """
        record = await self._store.load_record(team_id)
        state = verify_team(record, now_ms)
        state.apply(document, now_ms, live=True)
        return await run_to_completion(self._commit(team_id, record, state, document, now_ms))

    async def _commit(
        self,
        team_id: str,
        record: TeamRecord,
        state: TeamState,
        document: SignedTeamDocument,
        now_ms: int,
    ) -> TeamState:
        hold_id = None
        if isinstance(document, Acceptance) and self._escrow is not None:
            if await self._store.load_escrow(team_id) is None:
                charter = state.charter
                hold_id = await self._escrow.reserve_budget(
                    team_id,
                    charter.initiator,
                    charter.budget.amount,
                    charter.budget.currency,
                    timeout_ms=charter.deadline_ms - now_ms,
                )
        try:
            await self._store.append_document(
                team_id, len(record.documents), document, escrow_hold=hold_id
            )
        except BaseException:
            # The acceptance did not stick, so neither may its hold.
            if hold_id is not None and self._escrow is not None:
                await self._escrow.release(team_id, hold_id)
            raise
        if isinstance(document, Dissolution):
            await self.settle(team_id, now_ms)
        return state

    async def settle(self, team_id: str, now_ms: int) -> EscrowOutcome | None:
        """Pay or release the hold of a dissolved or expired team; safe to repeat.

        Returns the hold's outcome, or None when there is no hold. A team that
        is still open keeps its hold ("held").

        Raises:
            LedgerError: the ledger refused the payout or release; the hold
                stays recorded as held, so a later call tries again.
            Conflict: a concurrent settle recorded the outcome first
                (``escrow_settled``); the ledger calls were idempotent.
            StorageUnavailable: the store or the ledger could not be written.

        Cancellation: the outcome is recorded only after the ledger calls,
        which are idempotent per hold id, so calling again finishes the job.
        """
        hold = await self._store.load_escrow(team_id)
        if hold is None or hold.outcome != "held" or self._escrow is None:
            return None if hold is None else hold.outcome
        state = await self.state(team_id, now_ms)
        dissolution = state.dissolution
        if dissolution is None and state.is_open(now_ms):
            return "held"
        outcome: EscrowOutcome
        if dissolution is not None and dissolution.outcome == "goal_met" and dissolution.payouts:
            shares = {payout.member: payout.amount for payout in dissolution.payouts}
            await self._escrow.pay_members(team_id, hold.hold_id, shares)
            outcome = "paid"
        else:
            await self._escrow.release(team_id, hold.hold_id)
            outcome = "released"
        await self._store.settle_escrow(team_id, outcome)
        return outcome
