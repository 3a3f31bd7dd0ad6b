"""SQLite persistence for teams: charters, signed documents, key epochs, team posts.

Documents are stored as their canonical signed JSON, in the order they were
accepted, so a loaded record re-verifies offline exactly as it was built.
Each public method is one transaction. Team thread posts are stored only as
the ciphertext messages the node received; this table never sees plaintext.
"""

from __future__ import annotations

import sqlite3

from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.errors import Conflict, NotFound, Replayed
from coral.protocol.message import Message, from_wire, to_wire
from coral.store.sqlite import Migration, SqliteDatabase
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

TEAMS_COMPONENT = "teams"

TEAMS_MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE team_charters (
            team_id TEXT PRIMARY KEY,
            initiator TEXT NOT NULL,
            charter_hash TEXT NOT NULL UNIQUE,
            deadline_ms INTEGER NOT NULL,
            charter_json TEXT NOT NULL,
            escrow_hold TEXT,
            escrow_outcome TEXT CHECK (escrow_outcome IN ('held', 'paid', 'released'))
        );
        CREATE TABLE team_documents (
            team_id TEXT NOT NULL REFERENCES team_charters(team_id),
            seq INTEGER NOT NULL,
            doc_type TEXT NOT NULL,
            doc_hash TEXT NOT NULL,
            signer TEXT NOT NULL,
            doc_json TEXT NOT NULL,
            PRIMARY KEY (team_id, seq)
        );
        CREATE INDEX team_documents_by_type ON team_documents(team_id, doc_type, seq);
        CREATE TABLE team_thread_messages (
            message_id TEXT PRIMARY KEY,
            team_id TEXT NOT NULL REFERENCES team_charters(team_id),
            thread TEXT NOT NULL,
            sender TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            message_json TEXT NOT NULL
        );
        CREATE INDEX team_thread_messages_by_thread
            ON team_thread_messages(team_id, thread, created_at);
        """,
    ),
)


class SqliteTeamStore:
    """The ``TeamStore`` of the embedded database (component ``teams``)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def migrate(self) -> int:
        """Create or upgrade the team tables; returns the schema version."""
        return await self._db.migrate(TEAMS_COMPONENT, TEAMS_MIGRATIONS)

    async def create_team(self, charter: TeamCharter) -> None:
        """Store a new team's charter; Conflict if the team id exists."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM team_charters WHERE team_id = ?", (charter.team_id,)
            )
            if await cur.fetchone() is not None:
                raise Conflict(f"team {charter.team_id} already exists", reason="team_exists")
            await conn.execute(
                "INSERT INTO team_charters(team_id, initiator, charter_hash, deadline_ms,"
                " charter_json) VALUES (?, ?, ?, ?, ?)",
                (
                    charter.team_id,
                    charter.initiator,
                    charter.content_hash(),
                    charter.deadline_ms,
                    document_json(charter).decode(),
                ),
            )

    async def load_record(self, team_id: str) -> TeamRecord:
        """The team's charter and documents in acceptance order; NotFound if unknown."""
        row = await self._db.fetchone(
            "SELECT charter_json FROM team_charters WHERE team_id = ?", (team_id,)
        )
        if row is None:
            raise NotFound(f"no team {team_id}", reason="team_not_found")
        rows = await self._db.fetchall(
            "SELECT doc_json FROM team_documents WHERE team_id = ? ORDER BY seq", (team_id,)
        )
        documents = tuple(parse_team_document(r["doc_json"]) for r in rows)
        return TeamRecord.model_construct(
            charter=parse_charter(row["charter_json"]), documents=documents
        )

    async def document_count(self, team_id: str) -> int:
        """How many documents the team's record holds; NotFound if unknown."""
        row = await self._db.fetchone(
            "SELECT (SELECT COUNT(*) FROM team_documents d WHERE d.team_id = c.team_id) AS n"
            " FROM team_charters c WHERE c.team_id = ?",
            (team_id,),
        )
        if row is None:
            raise NotFound(f"no team {team_id}", reason="team_not_found")
        return int(row["n"])

    async def append_document(
        self,
        team_id: str,
        expected_count: int,
        document: SignedTeamDocument,
        *,
        escrow_hold: str | None = None,
    ) -> None:
        """Append as document number ``expected_count``; Conflict if another writer was first."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "SELECT escrow_hold FROM team_charters WHERE team_id = ?", (team_id,)
            )
            team = await cur.fetchone()
            if team is None:
                raise NotFound(f"no team {team_id}", reason="team_not_found")
            cur = await conn.execute(
                "SELECT COUNT(*) FROM team_documents WHERE team_id = ?", (team_id,)
            )
            count_row = await cur.fetchone()
            count = int(count_row[0]) if count_row else 0
            if count != expected_count:
                raise Conflict(
                    f"team {team_id} changed ({count} documents, expected {expected_count})",
                    reason="team_changed",
                )
            if escrow_hold is not None and team["escrow_hold"] is not None:
                raise Conflict(f"team {team_id} already holds a budget", reason="team_changed")
            await conn.execute(
                "INSERT INTO team_documents(team_id, seq, doc_type, doc_hash, signer, doc_json)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    team_id,
                    count,
                    document.body()["type"],
                    document.content_hash(),
                    document.signer,
                    document_json(document).decode(),
                ),
            )
            if escrow_hold is not None:
                await conn.execute(
                    "UPDATE team_charters SET escrow_hold = ?, escrow_outcome = 'held'"
                    " WHERE team_id = ?",
                    (escrow_hold, team_id),
                )

    async def load_escrow(self, team_id: str) -> EscrowHold | None:
        """The team's budget hold, if one was reserved."""
        row = await self._db.fetchone(
            "SELECT escrow_hold, escrow_outcome FROM team_charters WHERE team_id = ?", (team_id,)
        )
        if row is None or row["escrow_hold"] is None:
            return None
        return EscrowHold(hold_id=row["escrow_hold"], outcome=row["escrow_outcome"])

    async def settle_escrow(self, team_id: str, outcome: EscrowOutcome) -> None:
        """Record that the hold was paid out or released (only from 'held')."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE team_charters SET escrow_outcome = ?"
                " WHERE team_id = ? AND escrow_outcome = 'held'",
                (outcome, team_id),
            )
            if cur.rowcount != 1:
                raise Conflict(f"team {team_id} holds no open escrow", reason="escrow_settled")

    async def teams_with_due_holds(self, now_ms: int) -> list[str]:
        """Teams past their deadline whose budget hold is still open, earliest first."""
        rows = await self._db.fetchall(
            "SELECT team_id FROM team_charters WHERE escrow_outcome = 'held' AND deadline_ms <= ?"
            " ORDER BY deadline_ms, team_id",
            (now_ms,),
        )
        return [str(r["team_id"]) for r in rows]

    async def latest_key_epoch(self, team_id: str) -> KeyEpoch | None:
        """The newest key epoch document of the team (what a member unseals)."""
        row = await self._db.fetchone(
            "SELECT doc_json FROM team_documents WHERE team_id = ? AND doc_type = 'key_epoch'"
            " ORDER BY seq DESC LIMIT 1",
            (team_id,),
        )
        if row is None:
            return None
        document = parse_team_document(row["doc_json"])
        assert isinstance(document, KeyEpoch)
        return document

    async def append_thread_message(self, team_id: str, message: Message) -> None:
        """Store a team post as received; refuses anything but an encrypted team message."""
        message_team, _ = team_message_epoch(message)
        if message_team != team_id or message.thread is None:
            raise Conflict("message is not a post of this team's thread", reason="wrong_team")
        try:
            async with self._db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO team_thread_messages(message_id, team_id, thread, sender,"
                    " created_at, message_json) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        message.id,
                        team_id,
                        message.thread,
                        message.sender,
                        message.created_at,
                        canonical_json(to_wire(message)).decode(),
                    ),
                )
        except sqlite3.IntegrityError:
            raise Replayed(f"message {message.id} is already stored") from None

    async def thread_messages(self, team_id: str, thread: str) -> list[Message]:
        """The stored posts of one team thread, oldest first."""
        rows = await self._db.fetchall(
            "SELECT message_json FROM team_thread_messages WHERE team_id = ? AND thread = ?"
            " ORDER BY created_at, message_id",
            (team_id, thread),
        )
        return [from_wire(parse_json(r["message_json"])) for r in rows]


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

    async def teams_of(self, did: str) -> list[str]:
        """Ids of the teams ``did`` takes part in."""
        rows = await self._db.fetchall(
            "SELECT team_id FROM team_parties WHERE did = ? ORDER BY team_id", (did,)
        )
        return [str(r["team_id"]) for r in rows]
