"""Teams in the running node: the team service, its admission check, escrow and tables.

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
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coral.agents.directory import AgentDirectory
from coral.context import NodeContext
from coral.coordination.commands import ADD, CLOSE, CREATE, REMOVE
from coral.coordination.service import CoordinationService
from coral.ledger.errors import PendingAlreadyResolved, PendingExpired
from coral.ledger.model import AccountKind
from coral.ledger.service import LedgerService
from coral.protocol.agent import AgentRecord
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage
from coral.protocol.message import Message, now_ms
from coral.store.sqlite import Migration, SqliteDatabase
from coral.store.teams_sqlite import SqliteTeamStore
from coral.subsystems import Subsystem
from coral.teams import (
    Invitation,
    MembershipCertificate,
    SignedTeamDocument,
    TeamCharter,
    TeamEscrow,
    TeamLifecycle,
    TeamRecord,
    TeamState,
    authorize_team_message,
    match_candidates,
    parse_team_document,
)
from coral.teams.errors import NotAMember, NotAuthorized

#: Message kind that carries one signed team document in its data part.
TEAM_DOCUMENT_KIND = "team.document"
#: Argument of ``thread.create`` that binds the new thread to a team.
TEAM_THREAD_ARG = "team_id"

INDEX_COMPONENT = "teams_index"
INDEX_MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE team_threads (
            thread_id TEXT PRIMARY KEY,
            team_id TEXT NOT NULL
        );
        CREATE INDEX team_threads_by_team ON team_threads(team_id);
        CREATE TABLE team_parties (
            did TEXT NOT NULL,
            team_id TEXT NOT NULL,
            PRIMARY KEY (did, team_id)
        );
        """,
    ),
)


class SqliteTeamIndex:
    """Lookups the team record cannot answer fast: thread bindings and who is in which team.

    Bindings are also held in memory (this process is their only writer), because
    every message the node admits asks whether its thread is a team thread.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._bound: dict[str, str] = {}

    async def migrate(self) -> int:
        """Create or upgrade the index tables and load the bindings; returns the version."""
        version = await self._db.migrate(INDEX_COMPONENT, INDEX_MIGRATIONS)
        rows = await self._db.fetchall("SELECT thread_id, team_id FROM team_threads")
        self._bound = {str(r["thread_id"]): str(r["team_id"]) for r in rows}
        return version

    async def bind_thread(self, thread_id: str, team_id: str) -> None:
        """Bind ``thread_id`` to ``team_id``; Conflict if the thread is bound already."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "SELECT team_id FROM team_threads WHERE thread_id = ?", (thread_id,)
            )
            if await cur.fetchone() is not None:
                raise Conflict(f"thread {thread_id} is already a team thread", reason="bound")
            await conn.execute(
                "INSERT INTO team_threads(thread_id, team_id) VALUES (?, ?)", (thread_id, team_id)
            )
        self._bound[thread_id] = team_id

    async def team_of_thread(self, thread_id: str) -> str | None:
        """The team a thread is bound to, or None for an ordinary thread."""
        return self._bound.get(thread_id)

    async def threads_of_team(self, team_id: str) -> list[str]:
        """Every thread bound to the team, in id order."""
        rows = await self._db.fetchall(
            "SELECT thread_id FROM team_threads WHERE team_id = ? ORDER BY thread_id", (team_id,)
        )
        return [str(r["thread_id"]) for r in rows]

    async def add_party(self, team_id: str, did: str) -> None:
        """Remember that ``did`` takes part in the team (initiator, invitee or member)."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO team_parties(did, team_id) VALUES (?, ?)", (did, team_id)
            )

    async def is_party(self, team_id: str, did: str) -> bool:
        """True when ``did`` is the initiator, an invitee or a member of the team."""
        row = await self._db.fetchone(
            "SELECT 1 FROM team_parties WHERE did = ? AND team_id = ?", (did, team_id)
        )
        return row is not None

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams past their deadline whose budget hold is still open.

        Reads the team store's charter table (same database): the store has no
        such query and only this periodic sweep needs it.
        """
        rows = await self._db.fetchall(
            "SELECT team_id FROM team_charters WHERE escrow_outcome = 'held' AND deadline_ms <= ?"
            " ORDER BY deadline_ms",
            (now_ms,),
        )
        return [str(r["team_id"]) for r in rows]

    async def teams_of(self, did: str) -> list[str]:
        """Ids of the teams ``did`` takes part in."""
        rows = await self._db.fetchall(
            "SELECT team_id FROM team_parties WHERE did = ? ORDER BY team_id", (did,)
        )
        return [str(r["team_id"]) for r in rows]


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
    against it; the store stays the source of truth after a restart.
    """

    def __init__(
        self,
        store: SqliteTeamStore,
        index: SqliteTeamIndex,
        directory: AgentDirectory,
        coordination: CoordinationService,
        *,
        escrow: TeamEscrow | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
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
        """Release (or pay) the holds of teams whose deadline passed; returns how many."""
        settled = 0
        for team_id in await self.index.teams_with_due_holds(self._clock()):
            if await self.lifecycle.settle(team_id, self._clock()) not in (None, "held"):
                settled += 1
        return settled

    async def propose(self, charter: TeamCharter) -> TeamState:
        """Store a new team; its initiator must be a registered agent."""
        if not await self._directory.is_registered(charter.initiator):
            raise Forbidden(
                f"initiator {charter.initiator} is not a registered agent",
                reason="agent_not_registered",
            )
        state = await self.lifecycle.propose(charter, self._clock())
        await self.index.add_party(charter.team_id, charter.initiator)
        self._states[charter.team_id] = state
        return state

    async def submit(self, team_id: str, document: SignedTeamDocument) -> TeamState:
        """Apply one signed document to the team (or raise its typed refusal)."""
        if document.team_id != team_id:
            raise InvalidMessage("document belongs to another team", reason="wrong_team")
        lock = self._locks.setdefault(team_id, asyncio.Lock())
        async with lock:
            state = await self.lifecycle.submit(team_id, document, self._clock())
            self._states[team_id] = state
        if isinstance(document, Invitation):
            await self.index.add_party(team_id, document.invitee)
        elif isinstance(document, MembershipCertificate):
            await self.index.add_party(team_id, document.member)
        self._notify(team_id)
        return state

    def _notify(self, team_id: str) -> None:
        event = self._changed.pop(team_id, None)
        if event is not None:
            event.set()

    async def state(self, team_id: str) -> TeamState:
        """The team's verified current state (from cache, else replayed from the store)."""
        cached = self._states.get(team_id)
        if cached is not None:
            return cached
        state = await self.lifecycle.state(team_id, self._clock())
        self._states.setdefault(team_id, state)
        return self._states[team_id]

    async def record(self, team_id: str, reader: str) -> TeamRecord:
        """The full signed record, for the initiator and agents named in it only."""
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
        """Directory records (local and replicated) that could fill each role, cheapest first."""
        state = await self.state(team_id)
        if not state.has_authority(reader):
            raise NotAuthorized(f"{reader} may not recruit for team {team_id}")
        records = await self._directory.search()
        return match_candidates(state.charter, records)

    # -- the gateway admission check ------------------------------------------------

    async def admit(self, message: Message) -> None:
        """Refuse (typed) any message that breaks a team rule; apply carried team documents."""
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


class LedgerTeamEscrow:
    """``TeamEscrow`` over the node's ledger: one escrow account per team.

    Agents' ledger accounts are named by their did. The budget is reserved as
    a pending transfer from the initiator to ``team:<team_id>``; paying posts
    only the shares (the ledger returns the rest to the payer) and moves each
    share on to its member. Transfer ids derive from the hold id, so a
    repeated settle after a crash is a ledger-level no-op.
    """

    def __init__(self, ledger: LedgerService) -> None:
        self._ledger = ledger

    def _ledger_name(self, currency: str) -> str:
        # "CRL", the charter's default currency, is the node's default ledger.
        return self._ledger.default_ledger if currency == "CRL" else currency

    async def reserve_budget(
        self, team_id: str, payer_did: str, amount: int, currency: str, timeout_ms: int
    ) -> str:
        """Hold the budget from ``payer_did`` in the team's escrow account; returns the hold id."""
        hold_id = f"teamhold-{secrets.token_hex(12)}"
        if amount == 0:
            return hold_id + "-empty"
        escrow = await self._ledger.open_account(
            f"team:{team_id}",
            owner=payer_did,
            kind=AccountKind.TEAM_ESCROW,
            ledger=self._ledger_name(currency),
        )
        await self._ledger.reserve(
            payer_did,
            escrow.id,
            amount,
            timeout_ms=max(1, timeout_ms),
            transfer_id=hold_id,
            memo=f"budget of team {team_id}",
        )
        return hold_id

    async def pay_members(self, team_id: str, hold_id: str, shares: dict[str, int]) -> None:
        """Post the agreed shares out of the hold and pay each member its share."""
        total = sum(shares.values())
        if hold_id.endswith("-empty"):
            return
        if total == 0:
            await self.release(team_id, hold_id)
            return
        posted = await self._ledger.post(hold_id, amount=total, transfer_id=f"{hold_id}.post")
        escrow = posted.transfer.credit_account
        ledger = posted.transfer.ledger
        for member, amount in sorted(shares.items()):
            if amount <= 0:
                continue
            await self._ledger.open_account(member, owner=member, ledger=ledger)
            tag = hashlib.sha256(member.encode()).hexdigest()[:24]
            await self._ledger.transfer(
                escrow, member, amount, transfer_id=f"{hold_id}.pay.{tag}", memo=f"team {team_id}"
            )

    async def release(self, team_id: str, hold_id: str) -> None:
        """Void the hold; a hold that already timed out counts as released."""
        if hold_id.endswith("-empty"):
            return
        try:
            await self._ledger.void(hold_id, transfer_id=f"{hold_id}.void")
        except PendingAlreadyResolved:
            pass
        except PendingExpired:
            # Past its timeout the hold can no longer be voided, only expired; do it
            # now rather than wait for the ledger's own sweep, so funds return at once.
            await self._ledger.expire_due()


class TeamsSubsystem(Subsystem):
    """Team formation in the node: service in ``ctx.services["teams"]``, routes, admission."""

    name = "teams"

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        from coral.api.http import teams as http_teams

        store = SqliteTeamStore(node.db)
        await store.migrate()
        index = SqliteTeamIndex(node.db)
        await index.migrate()
        service = TeamsService(store, index, ctx.require("directory"), ctx.require("coordination"))
        self.service = service
        ctx.services["teams"] = service
        ctx.require("gateway").checks.append(service.admit)
        self.http_installers.append(http_teams.install)

    async def started(self, node: Any, ctx: NodeContext) -> None:
        # Looked up now, not in setup, so the ledger subsystem may come in any order.
        ledger = ctx.services.get("ledger")
        if isinstance(ledger, LedgerService):
            self.service.attach_escrow(LedgerTeamEscrow(ledger))
            self.every(30.0, self.service.settle_due)
