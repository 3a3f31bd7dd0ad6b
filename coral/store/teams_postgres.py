"""Teams on PostgreSQL: charters, signed documents, escrow holds, team posts, the team index.

The same tables and semantics as ``coral.store.teams_sqlite`` (components
``teams`` and ``teams_index``), safe for several node processes (replicas)
on one database:

- a document is appended under a row lock on its team's charter, so of two
  processes appending to one team at once the second waits, then sees the
  count moved and gets ``Conflict`` (``team_changed``): a team's record is one
  order, decided by the database;
- every write that changes what a team reader sees (a document appended, a
  thread bound) sends, inside its transaction, a notice on the ``teams``
  channel naming the team and the writing process (PostgreSQL delivers it
  only on commit; ``coral.store.wakeups_postgres`` listens). Notices are
  hints: readers re-read the store, and after a (re)connect every local wait
  looks again;
- thread bindings never change once written, so ``PostgresTeamIndex`` keeps
  the ones it has read in a bounded memory cache; a thread is remembered as
  *not* bound only when it already existed before the lookup (asked through
  ``thread_exists``), because its binding, if any, commits before it is
  created.

Team posts are stored only as the ciphertext messages the node received.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import asyncpg

from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.errors import Conflict, NotFound, Replayed
from coral.protocol.message import Message, from_wire, to_wire
from coral.store.postgres import PostgresMigration, migrate
from coral.store.wakeups_postgres import wake_payload
from coral.teams.documents import (
    KeyEpoch,
    SignedTeamDocument,
    TeamCharter,
    TeamRecord,
    document_json,
    parse_charter,
    parse_team_document,
)
from coral.teams.lifecycle import EscrowHold, EscrowOutcome
from coral.teams.messages import team_message_epoch

#: The NOTIFY channel of team changes (the payload names team ids).
CHANNEL = "teams"

TEAMS_COMPONENT = "teams"
TEAMS_MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE team_charters (
            team_id TEXT PRIMARY KEY,
            initiator TEXT NOT NULL,
            charter_hash TEXT NOT NULL UNIQUE,
            deadline_ms BIGINT NOT NULL,
            charter_json TEXT NOT NULL,
            escrow_hold TEXT,
            escrow_outcome TEXT CHECK (escrow_outcome IN ('held', 'paid', 'released'))
        );
        CREATE INDEX team_charters_due ON team_charters (deadline_ms)
            WHERE escrow_outcome = 'held';
        CREATE TABLE team_documents (
            team_id TEXT NOT NULL REFERENCES team_charters (team_id),
            seq INTEGER NOT NULL,
            doc_type TEXT NOT NULL,
            doc_hash TEXT NOT NULL,
            signer TEXT NOT NULL,
            doc_json TEXT NOT NULL,
            PRIMARY KEY (team_id, seq)
        );
        CREATE INDEX team_documents_by_type ON team_documents (team_id, doc_type, seq);
        CREATE TABLE team_thread_messages (
            message_id TEXT PRIMARY KEY,
            team_id TEXT NOT NULL REFERENCES team_charters (team_id),
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            message_json TEXT NOT NULL
        );
        CREATE INDEX team_thread_messages_by_thread
            ON team_thread_messages (team_id, thread, created_at);
        """,
    ),
]

INDEX_COMPONENT = "teams_index"
INDEX_MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE team_threads (
            thread_id TEXT PRIMARY KEY,
            team_id TEXT NOT NULL
        );
        CREATE INDEX team_threads_by_team ON team_threads (team_id);
        CREATE TABLE team_parties (
            did TEXT NOT NULL,
            team_id TEXT NOT NULL,
            PRIMARY KEY (did, team_id)
        );
        """,
    ),
]

#: How many thread lookups ``PostgresTeamIndex`` remembers (bound or known ordinary).
THREAD_CACHE_SIZE = 65_536


def new_writer() -> str:
    """A fresh token naming one process's writes in ``teams`` notices."""
    return secrets.token_hex(8)


async def _announce(conn: asyncpg.Connection, writer: str, team_id: str) -> None:
    # Inside the caller's transaction: PostgreSQL sends it only if that commits.
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, wake_payload(writer, [team_id]))


class PostgresTeamStore:
    """The ``TeamStore`` on a shared PostgreSQL pool; safe for several node processes."""

    def __init__(self, pool: asyncpg.Pool, *, writer: str | None = None) -> None:
        self._pool = pool
        #: This process's token in ``teams`` notices (its own are not news to it).
        self.writer = writer or new_writer()

    async def migrate(self) -> int:
        """Create or upgrade the team tables (once, under an advisory lock); returns the version."""
        return await migrate(self._pool, TEAMS_COMPONENT, TEAMS_MIGRATIONS)

    async def create_team(self, charter: TeamCharter) -> None:
        """Store a new team's charter; Conflict if the team id exists."""
        async with self._pool.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO team_charters (team_id, initiator, charter_hash, deadline_ms,"
                " charter_json) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                charter.team_id,
                charter.initiator,
                charter.content_hash(),
                charter.deadline_ms,
                document_json(charter).decode(),
            )
        if inserted is None:
            raise Conflict(f"team {charter.team_id} already exists", reason="team_exists")

    async def load_record(self, team_id: str) -> TeamRecord:
        """The team's charter and documents in acceptance order; NotFound if unknown."""
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            charter = await conn.fetchval(
                "SELECT charter_json FROM team_charters WHERE team_id = $1", team_id
            )
            if charter is None:
                raise NotFound(f"no team {team_id}", reason="team_not_found")
            rows = await conn.fetch(
                "SELECT doc_json FROM team_documents WHERE team_id = $1 ORDER BY seq", team_id
            )
        documents = tuple(parse_team_document(r["doc_json"]) for r in rows)
        return TeamRecord.model_construct(charter=parse_charter(charter), documents=documents)

    async def document_count(self, team_id: str) -> int:
        """How many documents the team's record holds; NotFound if unknown."""
        async with self._pool.acquire() as conn:
            count = await conn.fetchval(
                "SELECT (SELECT COUNT(*) FROM team_documents d WHERE d.team_id = c.team_id)"
                " FROM team_charters c WHERE c.team_id = $1",
                team_id,
            )
        if count is None:
            raise NotFound(f"no team {team_id}", reason="team_not_found")
        return int(count)

    async def append_document(
        self,
        team_id: str,
        expected_count: int,
        document: SignedTeamDocument,
        *,
        escrow_hold: str | None = None,
    ) -> None:
        """Append as document number ``expected_count``; Conflict if another writer was first.

        Cancelled while in flight, the transaction rolls back: nothing is written.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            # The row lock orders appends to one team across processes.
            team = await conn.fetchrow(
                "SELECT escrow_hold FROM team_charters WHERE team_id = $1 FOR UPDATE", team_id
            )
            if team is None:
                raise NotFound(f"no team {team_id}", reason="team_not_found")
            count = int(
                await conn.fetchval(
                    "SELECT COUNT(*) FROM team_documents WHERE team_id = $1", team_id
                )
            )
            if count != expected_count:
                raise Conflict(
                    f"team {team_id} changed ({count} documents, expected {expected_count})",
                    reason="team_changed",
                )
            if escrow_hold is not None and team["escrow_hold"] is not None:
                raise Conflict(f"team {team_id} already holds a budget", reason="team_changed")
            await conn.execute(
                "INSERT INTO team_documents (team_id, seq, doc_type, doc_hash, signer, doc_json)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                team_id,
                count,
                document.body()["type"],
                document.content_hash(),
                document.signer,
                document_json(document).decode(),
            )
            if escrow_hold is not None:
                await conn.execute(
                    "UPDATE team_charters SET escrow_hold = $1, escrow_outcome = 'held'"
                    " WHERE team_id = $2",
                    escrow_hold,
                    team_id,
                )
            await _announce(conn, self.writer, team_id)

    async def load_escrow(self, team_id: str) -> EscrowHold | None:
        """The team's budget hold, if one was reserved."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT escrow_hold, escrow_outcome FROM team_charters WHERE team_id = $1",
                team_id,
            )
        if row is None or row["escrow_hold"] is None:
            return None
        return EscrowHold(hold_id=row["escrow_hold"], outcome=row["escrow_outcome"])

    async def settle_escrow(self, team_id: str, outcome: EscrowOutcome) -> None:
        """Record that the hold was paid out or released (only from 'held')."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE team_charters SET escrow_outcome = $1"
                " WHERE team_id = $2 AND escrow_outcome = 'held'",
                outcome,
                team_id,
            )
        if status != "UPDATE 1":
            raise Conflict(f"team {team_id} holds no open escrow", reason="escrow_settled")

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams past their deadline whose budget hold is still open, earliest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT team_id FROM team_charters WHERE escrow_outcome = 'held'"
                ' AND deadline_ms <= $1 ORDER BY deadline_ms, team_id COLLATE "C"',
                now_ms,
            )
        return [str(r["team_id"]) for r in rows]

    async def latest_key_epoch(self, team_id: str) -> KeyEpoch | None:
        """The newest key epoch document of the team (what a member unseals)."""
        async with self._pool.acquire() as conn:
            text = await conn.fetchval(
                "SELECT doc_json FROM team_documents WHERE team_id = $1"
                " AND doc_type = 'key_epoch' ORDER BY seq DESC LIMIT 1",
                team_id,
            )
        if text is None:
            return None
        document = parse_team_document(text)
        assert isinstance(document, KeyEpoch)
        return document

    async def append_thread_message(self, team_id: str, message: Message) -> None:
        """Store a team post as received; refuses anything but an encrypted team message."""
        message_team, _ = team_message_epoch(message)
        if message_team != team_id or message.thread is None:
            raise Conflict("message is not a post of this team's thread", reason="wrong_team")
        try:
            async with self._pool.acquire() as conn:
                inserted = await conn.fetchval(
                    "INSERT INTO team_thread_messages (message_id, team_id, thread, sender,"
                    " created_at, message_json) VALUES ($1, $2, $3, $4, $5, $6)"
                    " ON CONFLICT (message_id) DO NOTHING RETURNING 1",
                    message.id,
                    team_id,
                    message.thread,
                    message.sender,
                    message.created_at,
                    canonical_json(to_wire(message)).decode(),
                )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"no team {team_id}", reason="team_not_found") from None
        if inserted is None:
            raise Replayed(f"message {message.id} is already stored")

    async def thread_messages(self, team_id: str, thread: str) -> list[Message]:
        """The stored posts of one team thread, oldest first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT message_json FROM team_thread_messages WHERE team_id = $1"
                ' AND thread = $2 ORDER BY created_at, message_id COLLATE "C"',
                team_id,
                thread,
            )
        return [from_wire(parse_json(r["message_json"])) for r in rows]


class PostgresTeamIndex:
    """The ``TeamIndex`` on a shared PostgreSQL pool: thread bindings and team parties.

    Every message the node admits asks whether its thread is a team thread, so
    answers are cached (at most ``cache_size`` threads): a binding never
    changes once written, and a thread is cached as ordinary only when
    ``thread_exists`` said it existed before the binding was looked up (a
    team thread's binding commits before the thread is created). Without
    ``thread_exists`` ordinary threads are looked up every time.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        writer: str | None = None,
        thread_exists: Callable[[str], Awaitable[bool]] | None = None,
        cache_size: int = THREAD_CACHE_SIZE,
    ) -> None:
        self._pool = pool
        #: This process's token in ``teams`` notices.
        self.writer = writer or new_writer()
        self._thread_exists = thread_exists
        self._cache_size = cache_size
        # thread id -> its team, or None for a thread known to be ordinary.
        self._threads: dict[str, str | None] = {}

    async def migrate(self) -> int:
        """Create or upgrade the index tables once, under an advisory lock; returns the version."""
        return await migrate(self._pool, INDEX_COMPONENT, INDEX_MIGRATIONS)

    def _remember(self, thread_id: str, team_id: str | None) -> None:
        if len(self._threads) >= self._cache_size:
            del self._threads[next(iter(self._threads))]  # the oldest answer
        self._threads[thread_id] = team_id

    async def bind_thread(self, thread_id: str, team_id: str) -> None:
        """Bind ``thread_id`` to ``team_id``; Conflict if the thread is bound already."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO team_threads (thread_id, team_id) VALUES ($1, $2)"
                " ON CONFLICT (thread_id) DO NOTHING RETURNING 1",
                thread_id,
                team_id,
            )
            if inserted is None:
                raise Conflict(f"thread {thread_id} is already a team thread", reason="bound")
            await _announce(conn, self.writer, team_id)
        self._remember(thread_id, team_id)

    async def team_of_thread(self, thread_id: str) -> str | None:
        """The team a thread is bound to, or None for an ordinary thread."""
        if thread_id in self._threads:
            return self._threads[thread_id]
        existed = self._thread_exists is not None and await self._thread_exists(thread_id)
        async with self._pool.acquire() as conn:
            team = await conn.fetchval(
                "SELECT team_id FROM team_threads WHERE thread_id = $1", thread_id
            )
        if team is not None:
            self._remember(thread_id, str(team))
            return str(team)
        if existed:
            self._remember(thread_id, None)
        return None

    async def threads_of_team(self, team_id: str) -> list[str]:
        """Every thread bound to the team, in id order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT thread_id FROM team_threads WHERE team_id = $1"
                ' ORDER BY thread_id COLLATE "C"',
                team_id,
            )
        return [str(r["thread_id"]) for r in rows]

    async def add_party(self, team_id: str, did: str) -> None:
        """Remember that ``did`` takes part in the team (idempotent)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO team_parties (did, team_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                did,
                team_id,
            )

    async def is_party(self, team_id: str, did: str) -> bool:
        """True when ``did`` is the initiator, an invitee or a member of the team."""
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM team_parties WHERE did = $1 AND team_id = $2", did, team_id
            )
        return found is not None

    async def teams_of(self, did: str) -> list[str]:
        """Ids of the teams ``did`` takes part in, in id order."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                'SELECT team_id FROM team_parties WHERE did = $1 ORDER BY team_id COLLATE "C"', did
            )
        return [str(r["team_id"]) for r in rows]
