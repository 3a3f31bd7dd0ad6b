"""The teams use cases: propose, submit, read, match, and admit team traffic.

How team traffic flows (every document stays signed by its author; the node
only verifies, stores and delivers):

- A charter is proposed with ``POST /v1/teams``. Any later document may be
  posted to ``POST /v1/teams/{id}/documents``, or travel inside an ordinary
  signed message of kind ``team.document`` (one data part: the document,
  sender = the document's signer). The node's admission check applies such a
  document to the team record *before* the message enters its thread, so a
  refused document refuses the message with the same typed reason (should
  the thread refuse the message after that, the valid document stays applied:
  the record, not the thread, is authoritative). That is how invitations
  reach invitees: the initiator creates a formation thread with the
  candidates and posts each invitation there mentioning its invitee; the
  invitee answers in the same thread, mentioning the issuer.
- A team thread is an ordinary thread created by a ``thread.create`` whose
  arguments carry ``"team_id"``. The check binds the new thread to the team
  (creator must hold team authority, participants must be exactly the current
  members) and from then on admits only encrypted ``team.message`` posts from
  members under the current key epoch, so the node stores ciphertext only.
  Adding, removing and closing in a bound thread also follow the certificates.
  The binding is written just before the thread is created; if creation then
  fails, the id stays reserved for the team, which harms nobody else because
  binding refuses ids of threads that already exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from coral.agents.directory import AgentDirectory
from coral.coordination.commands import ADD, CLOSE, CREATE, REMOVE
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentRecord
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage
from coral.protocol.message import Message, now_ms
from coral.protocol.tasks import run_to_completion
from coral.teams.documents import (
    Invitation,
    MembershipCertificate,
    SignedTeamDocument,
    TeamCharter,
    TeamRecord,
    parse_team_document,
)
from coral.teams.errors import NotAMember, NotAuthorized
from coral.teams.lifecycle import TeamEscrow, TeamLifecycle
from coral.teams.matching import match_candidates
from coral.teams.messages import authorize_team_message
from coral.teams.ports import TeamIndex, TeamStore
from coral.teams.state import TeamState

#: Message kind that carries one signed team document in its data part.
TEAM_DOCUMENT_KIND = "team.document"
#: Argument of ``thread.create`` that binds the new thread to a team.
TEAM_THREAD_ARG = "team_id"
#: How often ``submit`` applies a document when another process keeps appending first.
SUBMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class TeamView:
    """A team's signed record and bound threads as one reader sees them.

    ``revision`` grows by one with every document applied and every thread
    bound, so a reader can wait for "anything new since revision R".
    """

    record: TeamRecord
    thread_ids: list[str]
    revision: int


class TeamsService:
    """The node's team operations: propose, submit, read, match, and admit team traffic.

    Documents of one team are applied one at a time (a per-team lock), and the
    verified state is cached in memory because every team post is checked
    against it; the store stays the source of truth after a restart. Any
    method may also raise ``StorageUnavailable`` when the store cannot be
    read or written.

    With ``shared=True`` other processes write the same store (replicas on
    PostgreSQL): a cached state is used only while the stored document count
    still matches it, a document that loses a race with another process is
    applied again on the new record (``SUBMIT_ATTEMPTS`` in all), and the
    owner of a listener for the other processes' commits calls ``changed``
    and ``changed_all`` so that waits wake up.

    Cancellation: the writes of one ``propose`` or ``submit`` (the record,
    its escrow hold, the party index, the cached state) run as one step that
    finishes even if the caller is cancelled; the caller then sees its
    ``CancelledError``. A cancelled call thus leaves either nothing or the
    whole step written, never a record naming a party the index does not know.
    """

    def __init__(
        self,
        store: TeamStore,
        index: TeamIndex,
        directory: AgentDirectory,
        coordination: CoordinationService,
        *,
        escrow: TeamEscrow | None = None,
        clock: Callable[[], int] = now_ms,
        shared: bool = False,
    ) -> None:
        self._store = store
        self._shared = shared
        self.lifecycle = TeamLifecycle(store, escrow)
        self.index = index
        self._directory = directory
        self._coordination = coordination
        self._clock = clock
        self._states: dict[str, TeamState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Set (and dropped) when a team changes; waiters of that team wake up.
        self._changed: dict[str, asyncio.Event] = {}

    def now(self) -> int:
        """The service clock, in milliseconds."""
        return self._clock()

    def attach_escrow(self, escrow: TeamEscrow) -> None:
        """Move team budgets through ``escrow`` from now on (the ledger may start later)."""
        self.lifecycle = TeamLifecycle(self._store, escrow)

    async def settle_due(self) -> int:
        """Release (or pay) the holds of teams whose deadline passed; returns how many.

        Raises:
            LedgerError: the ledger refused a payout or release; holds settled
                before it stay settled, the rest wait for the next call.

        Cancellation: safe to call again: settling is idempotent per hold
        (see ``TeamLifecycle.settle``).
        """
        settled = 0
        for team_id in await self._store.teams_with_due_holds(self._clock()):
            if await self.lifecycle.settle(team_id, self._clock()) not in (None, "held"):
                settled += 1
        return settled

    async def propose(self, charter: TeamCharter) -> TeamState:
        """Store a new team; its initiator must be a registered agent.

        Raises:
            Forbidden: the initiator is not a registered agent
                (``agent_not_registered``).
            SignatureError: the charter is not signed by its initiator.
            FromFuture: the charter is dated in the future.
            Conflict: the team id exists (``team_exists``).

        Cancellation: cancelled once the charter is being stored, the call
        first finishes storing it and indexing the initiator as its party,
        then raises ``CancelledError``; a retry then gets ``team_exists``.
        """
        if not await self._directory.is_registered(charter.initiator):
            raise Forbidden(
                f"initiator {charter.initiator} is not a registered agent",
                reason="agent_not_registered",
            )
        return await run_to_completion(self._propose(charter))

    async def _propose(self, charter: TeamCharter) -> TeamState:
        state = await self.lifecycle.propose(charter, self._clock())
        await self.index.add_party(charter.team_id, charter.initiator)
        self._states[charter.team_id] = state
        return state

    async def submit(self, team_id: str, document: SignedTeamDocument) -> TeamState:
        """Apply one signed document to the team (or raise its typed refusal).

        Raises:
            InvalidMessage: the document belongs to another team (``wrong_team``).
            NotFound: no team ``team_id`` (``team_not_found``).
            InvalidTeamDocument: the document is malformed or inconsistent.
            SignatureError: its signature is missing or wrong
                (``DecryptionFailed`` for a sealed key that does not open).
            Forbidden: ``WrongTeam``, ``NotAuthorized``, ``NotAMember``,
                ``NotTheInvitee`` or ``PriceAboveRoleMax``.
            UnknownReference: it refers to an invitation or acceptance the
                team never saw.
            Expired: ``InvitationExpired`` or ``TeamExpired``.
            InvitationReplayed: an invitation id or certificate used twice.
            Conflict: ``TeamDissolved``, ``AlreadyAnswered``, ``AlreadyMember``,
                ``RoleFull``, ``OverBudget``, ``StaleKeyEpoch``,
                ``KeyRecipientsMismatch``, ``RekeyRequired``, or
                ``team_changed`` when another writer appended first.
            LedgerError: the escrow refused the budget hold an acceptance
                takes (e.g. ``ExceedsCredits``: the initiator cannot fund it),
                or the payout a dissolution triggers.

        Any failure drops the cached state, so the next read replays the
        store (a refused payout leaves the dissolution stored). A
        ``team_changed`` conflict is retried on the new record first (up to
        ``SUBMIT_ATTEMPTS`` applications in all), so only a document that no
        longer applies, or a team that keeps changing, reaches the caller.

        Cancellation: cancelled while waiting for the per-team lock, nothing
        is written. Once the document is being applied, the call first
        finishes the whole step (document, escrow as in
        ``TeamLifecycle.submit``, party index, cache), then releases the lock
        and raises ``CancelledError``.
        """
        if document.team_id != team_id:
            raise InvalidMessage("document belongs to another team", reason="wrong_team")
        lock = self._locks.setdefault(team_id, asyncio.Lock())
        async with lock:
            for _ in range(SUBMIT_ATTEMPTS - 1):
                try:
                    return await run_to_completion(self._submit(team_id, document))
                except Conflict as exc:
                    # Another process appended first: apply the document on its record.
                    if exc.reason != "team_changed":
                        raise
            return await run_to_completion(self._submit(team_id, document))

    async def _submit(self, team_id: str, document: SignedTeamDocument) -> TeamState:
        try:
            state = await self.lifecycle.submit(team_id, document, self._clock())
            if isinstance(document, Invitation):
                await self.index.add_party(team_id, document.invitee)
            elif isinstance(document, MembershipCertificate):
                await self.index.add_party(team_id, document.member)
        except BaseException:
            # The store may hold more than the cache knows (a dissolution whose
            # payout was refused, a document whose party index failed): read
            # it again next time, and let waiters look again.
            self._states.pop(team_id, None)
            self._notify(team_id)
            raise
        self._states[team_id] = state
        self._notify(team_id)
        return state

    def _notify(self, team_id: str) -> None:
        event = self._changed.pop(team_id, None)
        if event is not None:
            event.set()

    def changed(self, team_ids: Iterable[str]) -> None:
        """Another process changed these teams: forget their cached state, wake their waits."""
        for team_id in team_ids:
            self._states.pop(team_id, None)
            self._notify(team_id)

    def changed_all(self) -> None:
        """Any team may have changed (e.g. changes went unannounced): forget and wake all."""
        self._states.clear()
        for team_id in list(self._changed):
            self._notify(team_id)

    async def state(self, team_id: str) -> TeamState:
        """The team's verified current state (from cache, else replayed from the store).

        With a shared store the cache is used only while the stored document
        count still matches it.

        Raises:
            NotFound: no team ``team_id`` (``team_not_found``).
        """
        cached = self._states.get(team_id)
        if cached is not None and (
            not self._shared or await self._store.document_count(team_id) == cached.applied_count
        ):
            return cached
        state = await self.lifecycle.state(team_id, self._clock())
        current = self._states.get(team_id)
        if current is None or current.applied_count < state.applied_count:
            self._states[team_id] = state
        return self._states[team_id]

    async def record(self, team_id: str, reader: str) -> TeamRecord:
        """The full signed record, for the initiator and agents named in it only.

        Raises:
            NotFound: no team ``team_id`` (``team_not_found``).
            NotAMember: ``reader`` takes no part in the team.
        """
        record = await self._store.load_record(team_id)
        if not await self.index.is_party(team_id, reader):
            raise NotAMember(f"{reader} takes no part in team {team_id}")
        return record

    async def view(self, team_id: str, reader: str) -> TeamView:
        """The record, bound threads and revision of the team, for its parties only."""
        record = await self.record(team_id, reader)
        threads = await self.index.threads_of_team(team_id)
        return TeamView(record, threads, len(record.documents) + len(threads))

    async def wait_view(
        self, team_id: str, reader: str, *, after_revision: int, timeout_ms: int
    ) -> TeamView:
        """The team's view once its revision passes ``after_revision``, or at the timeout.

        Returns at once when the team already changed; otherwise blocks until a
        document is applied or a thread bound, or ``timeout_ms`` passes (then
        the unchanged view). Cancelling the wait leaves nothing behind.

        Raises:
            NotFound: no such team (reason ``team_not_found``).
            NotAMember: ``reader`` takes no part in the team.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            # Taken before reading, so a change during the read still wakes us.
            changed = self._changed.setdefault(team_id, asyncio.Event())
            view = await self.view(team_id, reader)
            remaining = deadline - loop.time()
            if view.revision > after_revision or remaining <= 0:
                return view
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass  # one more read returns the unchanged view

    async def candidates(self, team_id: str, reader: str) -> dict[str, list[AgentRecord]]:
        """Directory records (local and replicated) that could fill each role, cheapest first.

        Raises:
            NotFound: no team ``team_id`` (``team_not_found``).
            NotAuthorized: ``reader`` may not recruit for the team.
        """
        state = await self.state(team_id)
        if not state.has_authority(reader):
            raise NotAuthorized(f"{reader} may not recruit for team {team_id}")
        records = await self._directory.search()
        return match_candidates(state.charter, records)

    # -- the gateway admission check ------------------------------------------------

    async def admit(self, message: Message) -> None:
        """Refuse (typed) any message that breaks a team rule; apply carried team documents.

        Raises:
            InvalidMessage: a malformed team ``thread.create`` or
                ``team.document`` message.
            Forbidden: a carried document travels in a message from someone
                other than its signer (``not_document_signer``).
            NotAuthorized: the sender may not open, change or close the
                team's threads.
            NotAMember: the sender of a team thread post is not a member, or a
                team thread's participants are not exactly the current members.
            Conflict: the thread to bind already exists (``thread_exists``)
                or is already a team thread (``bound``).
            AgentNotRegistered: a participant named does not resolve.
            AmbiguousName: a participant name fits several remote agents.
            CoralError: ``authorize_team_message``'s refusal of a team post
                (key epoch, encryption), or a carried document's refusal (see
                ``submit``).

        Cancellation: see ``submit``; a thread binding written before the
        cancel stays (the id stays reserved for the team).
        """
        if message.kind == CREATE:
            args = _arguments(message)
            team_id = args.get(TEAM_THREAD_ARG) if args is not None else None
            if team_id is not None:
                await self._bind_thread(message, team_id, args or {})
            return
        team_id = await self.index.team_of_thread(message.thread) if message.thread else None
        if team_id is not None:
            state = await self.state(team_id)
            if message.kind in (ADD, REMOVE, CLOSE):
                await self._authorize_thread_op(state, message)
            else:
                # Outsiders learn only that they are outsiders, whatever they sent.
                if message.sender not in state.member_dids():
                    raise NotAMember(f"{message.sender} is not a member of team {team_id}")
                authorize_team_message(state, message, self._clock())
            return
        if message.kind == TEAM_DOCUMENT_KIND:
            document = _carried_document(message)
            await self.submit(document.team_id, document)

    async def _bind_thread(self, message: Message, team_id: Any, args: dict[str, Any]) -> None:
        if not isinstance(team_id, str):
            raise InvalidMessage("team_id is a string", reason="invalid_command")
        state = await self.state(team_id)
        if not state.has_authority(message.sender):
            raise NotAuthorized(f"{message.sender} may not open threads of team {team_id}")
        names = args.get("participants", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidMessage("participants is a list of agents", reason="invalid_command")
        participants = {await self._directory.resolve_did(n) for n in names} | {message.sender}
        if participants != set(state.current_members(self._clock())):
            raise NotAMember("a team thread's participants are exactly the current members")
        thread_id = message.thread or message.id
        if await self._coordination.store.get_thread(thread_id) is not None:
            raise Conflict(f"thread {thread_id} already exists", reason="thread_exists")
        await self.index.bind_thread(thread_id, team_id)
        self._notify(team_id)

    async def _authorize_thread_op(self, state: TeamState, message: Message) -> None:
        sender = message.sender
        if message.kind == CLOSE:
            if not state.has_authority(sender):
                raise NotAuthorized(f"{sender} may not close a thread of team {state.team_id}")
            return
        args = _arguments(message) or {}
        ref = args.get("agent")
        agent = await self._directory.resolve_did(ref) if isinstance(ref, str) else ""
        if message.kind == REMOVE and agent == sender:
            return  # anyone may leave
        if not state.has_authority(sender):
            raise NotAuthorized(f"{sender} may not change members of team {state.team_id}")
        if message.kind == ADD and agent not in state.current_members(self._clock()):
            raise NotAMember(f"{agent} is not a member of team {state.team_id}")


def _arguments(message: Message) -> dict[str, Any] | None:
    payloads = [d for d in message.data() if isinstance(d, dict)]
    return payloads[0] if len(payloads) == 1 else None


def _carried_document(message: Message) -> SignedTeamDocument:
    payload = _arguments(message)
    if payload is None or len(message.parts) != 1:
        raise InvalidMessage(
            "a team.document message carries one document", reason="invalid_team_document"
        )
    document = parse_team_document(payload)
    if document.signer != message.sender:
        raise Forbidden(
            "a team document travels in a message from its own signer", reason="not_document_signer"
        )
    return document
