"""SQLite persistence for the coordination engine (``CoordinationStore``).

Threads, their ordered logs and per-agent inboxes live in four tables. Every
``ThreadWrite`` is applied in one transaction (group commit, a savepoint per write), so an
operation that fails (duplicate message, concurrent update) leaves no rows.
Messages are stored as their full signed wire JSON, re-servable and
re-verifiable byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite

from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.model import InboxEntry, Thread, ThreadEntry, WaitKind
from coral.coordination.ports import HistoryGrant, ThreadWrite, WriteHook, WriteScope
from coral.protocol.message import from_wire
from coral.protocol.signing import canonical_wire
from coral.store.sqlite import Migration, SqliteDatabase

COMPONENT = "coordination"

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE coordination_threads (
            id TEXT PRIMARY KEY,
            session_id TEXT,
            name TEXT NOT NULL,
            creator TEXT NOT NULL,
            participants TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
            summary TEXT,
            strategy TEXT NOT NULL,
            strategy_options TEXT NOT NULL,
            strategy_state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            closed_at INTEGER,
            last_seq INTEGER NOT NULL,
            wake_at INTEGER
        );
        CREATE INDEX coordination_threads_wake ON coordination_threads (wake_at)
            WHERE wake_at IS NOT NULL;
        CREATE TABLE coordination_participants (
            thread_id TEXT NOT NULL REFERENCES coordination_threads (id),
            agent TEXT NOT NULL,
            PRIMARY KEY (thread_id, agent)
        );
        CREATE INDEX coordination_participants_agent ON coordination_participants (agent);
        CREATE TABLE coordination_entries (
            thread_id TEXT NOT NULL REFERENCES coordination_threads (id),
            seq INTEGER NOT NULL,
            message_id TEXT NOT NULL UNIQUE,
            sender TEXT NOT NULL,
            mentions TEXT NOT NULL,
            system INTEGER NOT NULL,
            recorded_at INTEGER NOT NULL,
            wire TEXT NOT NULL,
            PRIMARY KEY (thread_id, seq)
        );
        CREATE TABLE coordination_inbox (
            agent TEXT NOT NULL,
            seq INTEGER NOT NULL,
            thread_id TEXT NOT NULL,
            entry_seq INTEGER NOT NULL,
            sender TEXT NOT NULL,
            mentioned INTEGER NOT NULL,
            PRIMARY KEY (agent, seq),
            FOREIGN KEY (thread_id, entry_seq) REFERENCES coordination_entries (thread_id, seq)
        )
        """,
    )
]

_ENTRY_COLUMNS = "e.thread_id, e.seq, e.system, e.recorded_at, e.wire"


class SqliteCoordinationStore:
    """The default ``CoordinationStore``: one SQLite file shared with the other components."""

    def __init__(self, db: SqliteDatabase, *, cached_threads: int = 10_000) -> None:
        self.db = db
        # Called inside every write's transaction, after its rows: federation
        # queues cross-node deliveries here so they commit with the entry or not at all.
        self._write_hooks: list[WriteHook] = []
        # Threads as last committed, so a post needs no read before its write.
        # Only this store writes the thread tables (one process per SQLite
        # file); ``_writes`` counts committed writes so a read that raced one
        # is not cached.
        self._threads: OrderedDict[str, Thread] = OrderedDict()
        self._cached_threads = cached_threads
        self._writes = 0

    def _remember(self, thread: Thread) -> None:
        self._threads[thread.id] = thread
        self._threads.move_to_end(thread.id)
        if len(self._threads) > self._cached_threads:
            self._threads.popitem(last=False)

    def add_write_hook(self, hook: WriteHook) -> None:
        """Run ``hook`` inside every later write's transaction, after the write's rows."""
        self._write_hooks.append(hook)

    async def migrate(self) -> int:
        """Create or upgrade the coordination tables; return the schema version."""
        return await self.db.migrate(COMPONENT, MIGRATIONS)

    async def apply(self, write: ThreadWrite) -> list[InboxEntry]:
        """Write the thread, its new entries, history grants and inbox rows atomically.

        Runs as one synchronous function on the database thread, folded by
        group commit into a shared transaction with concurrent writers (each
        under its own savepoint), so a busy node pays one round trip and one
        commit for many messages. Returns the inbox rows of the new entries
        (not of history grants), for delivery to waiting agents.
        """
        entry_rows = [_entry_row(pending.entry) for pending in write.entries]
        hooks = tuple(self._write_hooks)
        stored = self._threads.get(write.thread.id)
        progress_only = (
            stored is not None
            and stored.last_seq == write.expected_last_seq
            and _only_progress(stored, write.thread)
        )

        def run(conn: sqlite3.Connection) -> list[InboxEntry]:
            delivered = _apply(conn, write, entry_rows, progress_only)
            scope = _Scope(conn)
            for hook in hooks:
                hook(write, scope)
            return delivered

        try:
            delivered = await self.db.write(run)
        except BaseException:
            self._threads.pop(write.thread.id, None)
            raise
        finally:
            self._writes += 1
        self._remember(write.thread)
        return delivered

    async def mirror(
        self,
        thread: Thread,
        entries: Sequence[tuple[ThreadEntry, Sequence[str]]],
        grants: Sequence[HistoryGrant] = (),
        first_time: Callable[[WriteScope], bool] | None = None,
    ) -> list[str] | None:
        """Store entries of a thread another node owns, for this node's participants.

        Each entry comes with the local agents whose inbox receives it; grants
        deliver the history to a local agent who just joined. The owner's
        sequence numbers are kept, and an entry already stored (by message id)
        is skipped. ``first_time`` runs in the same transaction and returns
        False for a delivery seen before, which then changes nothing and
        returns None. Otherwise returns the agents whose inbox grew.
        """
        rows = [(_entry_row(e), e, tuple(r)) for e, r in entries]

        def run(conn: sqlite3.Connection) -> list[str] | None:
            if first_time is not None and not first_time(_Scope(conn)):
                return None
            return _mirror(conn, thread, rows, grants)

        try:
            return await self.db.write(run)
        finally:
            self._writes += 1
            self._threads.pop(thread.id, None)

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None when no thread has that id."""
        cached = self._threads.get(thread_id)
        if cached is not None:
            return cached
        writes = self._writes
        row = await self.db.fetchone(
            "SELECT * FROM coordination_threads WHERE id = ?", (thread_id,)
        )
        if row is None:
            return None
        thread = _thread(row)
        if writes == self._writes:  # no write landed while we read: the row is current
            self._remember(thread)
        return thread

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` currently participates in, oldest first."""
        sql = (
            "SELECT t.* FROM coordination_threads t JOIN coordination_participants p"
            " ON p.thread_id = t.id WHERE p.agent = ?"
        )
        params: list[object] = [agent]
        if session_id is not None:
            sql += " AND t.session_id = ?"
            params.append(session_id)
        rows = await self.db.fetchall(sql + " ORDER BY t.created_at, t.rowid", params)
        return [_thread(row) for row in rows]

    async def has_message(self, message_id: str) -> bool:
        """True when an entry with this message id is stored."""
        row = await self.db.fetchone(
            "SELECT 1 FROM coordination_entries WHERE message_id = ?", (message_id,)
        )
        return row is not None

    async def history(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEntry]:
        """Entries with seq > ``after_seq``, in order, at most ``limit``."""
        rows = await self.db.fetchall(
            f"SELECT {_ENTRY_COLUMNS} FROM coordination_entries e"
            " WHERE e.thread_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
            (thread_id, after_seq, limit),
        )
        return [_entry(row) for row in rows]

    async def inbox(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> list[InboxEntry]:
        """Inbox entries past cursor ``after`` that match the filter, in order."""
        rows = await self.db.fetchall(*_inbox_query(agent, after, limit, kind, from_agent))
        return [InboxEntry(agent, int(row["cursor"]), _entry(row)) for row in rows]

    async def inbox_page(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> tuple[list[InboxEntry], int]:
        """``inbox(...)`` and the agent's newest cursor, read together in one hop."""
        sql, params = _inbox_query(agent, after, limit, kind, from_agent)

        def read(conn: sqlite3.Connection) -> tuple[list[Any], int]:
            rows = conn.execute(sql, params).fetchall()
            head = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM coordination_inbox WHERE agent = ?", (agent,)
            ).fetchone()
            return rows, int(head[0])

        rows, head = await self.db.run(read)
        return [InboxEntry(agent, int(row["cursor"]), _entry(row)) for row in rows], head

    async def inbox_cursor(self, agent: str) -> int:
        """The newest cursor in ``agent``'s inbox (0 when empty)."""
        row = await self.db.fetchone(
            "SELECT COALESCE(MAX(seq), 0) FROM coordination_inbox WHERE agent = ?", (agent,)
        )
        return int(row[0]) if row is not None else 0

    async def due_threads(self, now_ms: int) -> list[str]:
        """Ids of open threads whose strategy asked to be woken at or before now."""
        rows = await self.db.fetchall(
            "SELECT id FROM coordination_threads WHERE wake_at IS NOT NULL AND wake_at <= ?"
            " AND state = 'open' ORDER BY wake_at, id",
            (now_ms,),
        )
        return [str(row["id"]) for row in rows]

    async def next_wake_at(self) -> int | None:
        """The earliest wake time any open thread asked for, or None."""
        row = await self.db.fetchone(
            "SELECT MIN(wake_at) FROM coordination_threads"
            " WHERE wake_at IS NOT NULL AND state = 'open'"
        )
        return int(row[0]) if row is not None and row[0] is not None else None


class _Scope:
    """A write's open SQLite transaction, handed to write hooks (``WriteScope``)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def transaction(self) -> sqlite3.Connection:
        return self._conn

    def entries_through(self, thread_id: str, through_seq: int) -> list[ThreadEntry]:
        rows = self._conn.execute(
            "SELECT thread_id, seq, system, recorded_at, wire FROM coordination_entries"
            " WHERE thread_id = ? AND seq <= ? ORDER BY seq",
            (thread_id, through_seq),
        ).fetchall()
        return [_entry(row) for row in rows]


def _inbox_query(
    agent: str, after: int, limit: int, kind: WaitKind, from_agent: str | None
) -> tuple[str, list[object]]:
    sql = (
        f"SELECT i.seq AS cursor, {_ENTRY_COLUMNS} FROM coordination_inbox i"
        " JOIN coordination_entries e ON e.thread_id = i.thread_id AND e.seq = i.entry_seq"
        " WHERE i.agent = ? AND i.seq > ?"
    )
    params: list[object] = [agent, after]
    if kind == "mention":
        sql += " AND i.mentioned = 1"
    elif kind == "agent":
        sql += " AND i.sender = ?"
        params.append(from_agent)
    return sql + " ORDER BY i.seq LIMIT ?", [*params, limit]


def _write_thread(conn: sqlite3.Connection, write: ThreadWrite) -> None:
    thread = write.thread
    values = (
        thread.session_id,
        thread.name,
        thread.creator,
        _json(list(thread.participants)),
        thread.state,
        thread.summary,
        thread.strategy,
        _json(thread.strategy_options),
        _json(thread.strategy_state),
        thread.created_at,
        thread.closed_at,
        thread.last_seq,
        thread.wake_at,
    )
    if write.expected_last_seq is None:
        try:
            conn.execute(
                "INSERT INTO coordination_threads (session_id, name, creator, participants,"
                " state, summary, strategy, strategy_options, strategy_state, created_at,"
                " closed_at, last_seq, wake_at, id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, thread.id),
            )
        except sqlite3.IntegrityError:
            raise ThreadExists(f"thread {thread.id} already exists") from None
    else:
        cur = conn.execute(
            "UPDATE coordination_threads SET session_id = ?, name = ?, creator = ?,"
            " participants = ?, state = ?, summary = ?, strategy = ?, strategy_options = ?,"
            " strategy_state = ?, created_at = ?, closed_at = ?, last_seq = ?, wake_at = ?"
            " WHERE id = ? AND last_seq = ?",
            (*values, thread.id, write.expected_last_seq),
        )
        if cur.rowcount != 1:
            raise ConcurrentUpdate(f"thread {thread.id} changed; retry")
        if not write.membership_changed:
            return
        conn.execute("DELETE FROM coordination_participants WHERE thread_id = ?", (thread.id,))
    conn.executemany(
        "INSERT INTO coordination_participants (thread_id, agent) VALUES (?, ?)",
        [(thread.id, agent) for agent in thread.participants],
    )


def _inbox_heads(conn: sqlite3.Connection, agents: set[str]) -> dict[str, int]:
    """The newest inbox cursor of each agent, in one statement (each MAX is an index seek)."""
    if not agents:
        return {}
    cur = conn.execute(
        "SELECT value, (SELECT COALESCE(MAX(seq), 0) FROM coordination_inbox WHERE agent = value)"
        " FROM json_each(?)",
        (_json(sorted(agents)),),
    )
    return {str(row[0]): int(row[1]) for row in cur.fetchall()}


def _history_rows(
    conn: sqlite3.Connection, thread_id: str, grant: HistoryGrant, heads: dict[str, int]
) -> list[tuple[object, ...]]:
    """Inbox rows delivering entries 1..through_seq to a joining agent."""
    cur = conn.execute(
        "SELECT seq, sender, mentions FROM coordination_entries"
        " WHERE thread_id = ? AND seq <= ? ORDER BY seq",
        (thread_id, grant.through_seq),
    )
    rows: list[tuple[object, ...]] = []
    for row in cur.fetchall():
        heads[grant.agent] += 1
        mentioned = grant.agent in json.loads(row["mentions"])
        rows.append(
            (grant.agent, heads[grant.agent], thread_id, row["seq"], row["sender"], mentioned)
        )
    return rows


def _entry_row(entry: ThreadEntry) -> tuple[object, ...]:
    message = entry.message
    return (
        entry.thread_id,
        entry.seq,
        message.id,
        message.sender,
        _json(list(message.mentions)),
        entry.system,
        entry.recorded_at,
        canonical_wire(message).decode(),
    )


def _thread(row: aiosqlite.Row) -> Thread:
    return Thread(
        id=row["id"],
        session_id=row["session_id"],
        name=row["name"],
        creator=row["creator"],
        participants=tuple(json.loads(row["participants"])),
        state=row["state"],
        summary=row["summary"],
        strategy=row["strategy"],
        strategy_options=json.loads(row["strategy_options"]),
        strategy_state=json.loads(row["strategy_state"]),
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        last_seq=row["last_seq"],
        wake_at=row["wake_at"],
    )


def _entry(row: aiosqlite.Row) -> ThreadEntry:
    return ThreadEntry(
        thread_id=row["thread_id"],
        seq=int(row["seq"]),
        message=from_wire(json.loads(row["wire"])),
        recorded_at=int(row["recorded_at"]),
        system=bool(row["system"]),
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


def _only_progress(stored: Thread, new: Thread) -> bool:
    """True when ``new`` differs from ``stored`` at most in last_seq, strategy state, wake time."""
    return (
        stored.participants == new.participants
        and stored.state == new.state
        and stored.summary == new.summary
        and stored.closed_at == new.closed_at
        and stored.name == new.name
        and stored.session_id == new.session_id
        and stored.strategy == new.strategy
        and stored.strategy_options == new.strategy_options
    )


def _write_progress(conn: sqlite3.Connection, write: ThreadWrite) -> None:
    thread = write.thread
    cur = conn.execute(
        "UPDATE coordination_threads SET strategy_state = ?, last_seq = ?, wake_at = ?"
        " WHERE id = ? AND last_seq = ?",
        (
            _json(thread.strategy_state),
            thread.last_seq,
            thread.wake_at,
            thread.id,
            write.expected_last_seq,
        ),
    )
    if cur.rowcount != 1:
        raise ConcurrentUpdate(f"thread {thread.id} changed; retry")


def _apply(
    conn: sqlite3.Connection,
    write: ThreadWrite,
    entry_rows: list[tuple[object, ...]],
    progress_only: bool = False,
) -> list[InboxEntry]:
    # Runs on the database thread inside a transaction opened by group commit.
    # A post changes only the thread's progress columns: the rest is not rewritten.
    if progress_only:
        _write_progress(conn, write)
    else:
        _write_thread(conn, write)
    recipients = {a for pending in write.entries for a in pending.recipients}
    heads = _inbox_heads(conn, recipients | {g.agent for g in write.grants})
    inbox_rows: list[tuple[object, ...]] = []
    for grant in write.grants:
        inbox_rows += _history_rows(conn, write.thread.id, grant, heads)
    try:
        conn.executemany(
            "INSERT INTO coordination_entries (thread_id, seq, message_id, sender,"
            " mentions, system, recorded_at, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            entry_rows,
        )
    except sqlite3.IntegrityError as exc:
        if "message_id" in str(exc):
            raise DuplicateMessage("a message with this id is already stored") from None
        raise ConcurrentUpdate(f"thread {write.thread.id} changed; retry") from None
    delivered: list[InboxEntry] = []
    for pending in write.entries:
        entry, mentions = pending.entry, pending.entry.message.mentions
        for agent in pending.recipients:
            heads[agent] += 1
            delivered.append(InboxEntry(agent, heads[agent], entry))
            inbox_rows.append(
                (
                    agent,
                    heads[agent],
                    entry.thread_id,
                    entry.seq,
                    entry.sender,
                    agent in mentions,
                )
            )
    conn.executemany(
        "INSERT INTO coordination_inbox (agent, seq, thread_id, entry_seq, sender,"
        " mentioned) VALUES (?, ?, ?, ?, ?, ?)",
        inbox_rows,
    )
    return delivered


def _mirror(
    conn: sqlite3.Connection,
    thread: Thread,
    rows: list[tuple[tuple[object, ...], ThreadEntry, tuple[str, ...]]],
    grants: Sequence[HistoryGrant],
) -> list[str]:
    # The mirrored thread row follows the owner's snapshot whenever it is newer.
    current = conn.execute(
        "SELECT last_seq FROM coordination_threads WHERE id = ?", (thread.id,)
    ).fetchone()
    if current is None:
        _write_thread(conn, ThreadWrite(thread, None))
    elif int(current[0]) <= thread.last_seq:
        _write_thread(conn, ThreadWrite(thread, int(current[0]), membership_changed=True))
    # Same order as a local write: entries, then the history a joiner is granted,
    # then the new entries' inbox rows, so a joiner's inbox reads history first.
    grew: set[str] = set()
    fresh: list[tuple[ThreadEntry, tuple[str, ...]]] = []
    for row, entry, recipients in rows:
        cur = conn.execute(
            "INSERT OR IGNORE INTO coordination_entries (thread_id, seq, message_id, sender,"
            " mentions, system, recorded_at, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        if cur.rowcount == 1:  # otherwise already mirrored, and so already delivered
            fresh.append((entry, recipients))
    for grant in grants:
        heads = _inbox_heads(conn, {grant.agent})
        history = _history_rows(conn, thread.id, grant, heads)
        conn.executemany(
            "INSERT INTO coordination_inbox (agent, seq, thread_id, entry_seq, sender,"
            " mentioned) VALUES (?, ?, ?, ?, ?, ?)",
            history,
        )
        if history:
            grew.add(grant.agent)
    for entry, recipients in fresh:
        targets = [a for a in recipients if a != entry.sender]
        heads = _inbox_heads(conn, set(targets))
        mentions = entry.message.mentions
        conn.executemany(
            "INSERT INTO coordination_inbox (agent, seq, thread_id, entry_seq, sender,"
            " mentioned) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (a, heads[a] + 1, entry.thread_id, entry.seq, entry.sender, a in mentions)
                for a in targets
            ],
        )
        grew.update(targets)
    return sorted(grew)
