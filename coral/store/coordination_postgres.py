"""Threads, their logs and per-agent inboxes on PostgreSQL (``CoordinationStore``).

The same tables as ``coral.store.coordination_sqlite``, plus one row per
agent holding its newest inbox cursor. Each ``ThreadWrite`` is one
transaction, and the database decides the order, not a process's memory:

- the thread row is updated only while it still has the expected
  ``last_seq``; that UPDATE locks the row, so of two writers that read the
  same ``last_seq`` (in two node processes) the second blocks, then finds the
  sequence moved and gets ``ConcurrentUpdate``. A thread's log is therefore
  one total order however many processes append to it;
- inbox cursors come from the agents' head rows, locked ``FOR UPDATE`` in one
  order (by agent id, so writers cannot deadlock) until commit. A later
  cursor of an agent commits after every earlier one, so a reader that sees
  cursor N has already seen every cursor below it: catch-up by cursor never
  skips an entry.

Each write that grows inboxes also sends a ``coordination`` NOTIFY naming
the agents, so other processes wake their waits (``wakeups_postgres``).

Federation replicates threads through this store (``ReplicatedThreads``):
write hooks run synchronously inside each write's transaction, after its
rows, and add their own statements (the outbox rows) to a
``DeferredStatements`` collector the write then runs on its connection
before committing; ``mirror`` stores another node's thread entries, guarded
by the inbound dedupe row the same way.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.model import InboxEntry, Thread, ThreadEntry, WaitKind
from coral.coordination.ports import HistoryGrant, ThreadWrite, WriteHook, WriteScope
from coral.protocol.message import from_wire
from coral.protocol.signing import canonical_wire
from coral.store.postgres import DeferredStatements, PostgresMigration, migrate
from coral.store.wakeups_postgres import CHANNEL, wake_payload

COMPONENT = "coordination"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE coordination_threads (
            id TEXT PRIMARY KEY,
            created_order BIGINT GENERATED ALWAYS AS IDENTITY,
            session_id TEXT,
            name TEXT NOT NULL,
            creator TEXT NOT NULL,
            participants TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
            summary TEXT,
            strategy TEXT NOT NULL,
            strategy_options TEXT NOT NULL,
            strategy_state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            closed_at BIGINT,
            last_seq BIGINT NOT NULL,
            wake_at BIGINT
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
            seq BIGINT NOT NULL,
            message_id TEXT NOT NULL CONSTRAINT coordination_entries_message_id UNIQUE,
            sender TEXT NOT NULL,
            mentions TEXT NOT NULL,
            system BOOLEAN NOT NULL,
            recorded_at BIGINT NOT NULL,
            wire TEXT NOT NULL,
            PRIMARY KEY (thread_id, seq)
        );
        CREATE TABLE coordination_inbox_heads (
            agent TEXT PRIMARY KEY,
            head BIGINT NOT NULL
        );
        CREATE TABLE coordination_inbox (
            agent TEXT NOT NULL,
            seq BIGINT NOT NULL,
            thread_id TEXT NOT NULL,
            entry_seq BIGINT NOT NULL,
            sender TEXT NOT NULL,
            mentioned BOOLEAN NOT NULL,
            PRIMARY KEY (agent, seq),
            FOREIGN KEY (thread_id, entry_seq) REFERENCES coordination_entries (thread_id, seq)
        );
        """,
    )
]

_THREAD_COLUMNS = (
    "session_id, name, creator, participants, state, summary, strategy, strategy_options,"
    " strategy_state, created_at, closed_at, last_seq, wake_at, id"
)
_ENTRY_COLUMNS = "e.thread_id, e.seq, e.system, e.recorded_at, e.wire"


class PostgresCoordinationStore:
    """``CoordinationStore`` on a shared PostgreSQL pool; safe for several node processes."""

    def __init__(self, pool: asyncpg.Pool, *, notify: bool = True) -> None:
        self._pool = pool
        self._notify = notify
        #: This store's token in wake-up notices (``coral.store.wakeups_postgres``).
        self.writer = secrets.token_hex(8)
        # Called inside every write's transaction, after its rows (federation's fan-out).
        self._write_hooks: list[WriteHook] = []

    def add_write_hook(self, hook: WriteHook) -> None:
        """Run ``hook`` inside every later write's transaction, after the write's rows.

        The hook is synchronous: what it adds to ``scope.transaction`` (a
        ``DeferredStatements``) runs on the write's connection before commit.
        """
        self._write_hooks.append(hook)

    async def migrate(self) -> int:
        """Create or upgrade the coordination tables; return the schema version."""
        return await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def apply(self, write: ThreadWrite) -> list[InboxEntry]:
        """Write the thread, its new entries, history grants and inbox rows atomically.

        Raises:
            ThreadExists: a new thread's id is taken.
            ConcurrentUpdate: the stored thread's ``last_seq`` is not the expected one
                (another writer got there first), or an entry's seq is taken.
            DuplicateMessage: an entry's message id is already stored.

        Cancelled while in flight, the transaction rolls back: nothing is written.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            delivered = await _apply(conn, write)
            if self._write_hooks:
                await self._run_hooks(conn, write)
            woken = {e.agent for e in delivered} | {g.agent for g in write.grants}
            if self._notify and woken:  # sent by PostgreSQL only if this commits
                await conn.execute(
                    "SELECT pg_notify($1, $2)", CHANNEL, wake_payload(self.writer, sorted(woken))
                )
            return delivered

    async def _run_hooks(self, conn: asyncpg.Connection, write: ThreadWrite) -> None:
        history: list[ThreadEntry] = []
        through = max((g.through_seq for g in write.grants), default=0)
        if through:  # hooks send a joiner the history: read it now, as they cannot await
            history = await _entries_through(conn, write.thread.id, through)
        scope = _Scope(DeferredStatements(), write.thread.id, history, through)
        for hook in self._write_hooks:
            hook(write, scope)
        await scope.statements.run(conn)

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
        sequence numbers are kept, and an entry already stored (by message id
        or seq) is skipped. ``first_time`` runs first, in the same transaction:
        when it returns False, or a guard statement it added finds the delivery
        recorded before, nothing changes and this returns None. Otherwise returns
        the agents whose inbox grew (and wakes their waits on every replica).

        Raises:
            ThreadExists: another writer created the thread at the same moment (retry).

        Cancelled while in flight, the transaction rolls back: nothing is written.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            if first_time is not None:
                scope = _Scope(DeferredStatements(), thread.id, [])
                if not first_time(scope) or not await scope.statements.run(conn):
                    return None
            grew = await _mirror(conn, thread, entries, grants)
            if self._notify and grew:
                await conn.execute(
                    "SELECT pg_notify($1, $2)", CHANNEL, wake_payload(self.writer, grew)
                )
            return grew

    async def get_thread(self, thread_id: str) -> Thread | None:
        """The thread, or None when no thread has that id."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_THREAD_COLUMNS} FROM coordination_threads WHERE id = $1", thread_id
            )
        return _thread(row) if row is not None else None

    async def list_threads(self, agent: str, session_id: str | None = None) -> list[Thread]:
        """Threads ``agent`` currently participates in, oldest first."""
        columns = ", ".join(f"t.{c.strip()}" for c in _THREAD_COLUMNS.split(","))
        sql = (
            f"SELECT {columns} FROM coordination_threads t JOIN coordination_participants p"
            " ON p.thread_id = t.id WHERE p.agent = $1"
        )
        params: list[object] = [agent]
        if session_id is not None:
            sql += " AND t.session_id = $2"
            params.append(session_id)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql + " ORDER BY t.created_at, t.created_order", *params)
        return [_thread(row) for row in rows]

    async def has_message(self, message_id: str) -> bool:
        """True when an entry with this message id is stored."""
        async with self._pool.acquire() as conn:
            found = await conn.fetchval(
                "SELECT 1 FROM coordination_entries WHERE message_id = $1", message_id
            )
        return found is not None

    async def history(self, thread_id: str, after_seq: int, limit: int) -> list[ThreadEntry]:
        """Entries with seq > ``after_seq``, in order, at most ``limit``."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_ENTRY_COLUMNS} FROM coordination_entries e"
                " WHERE e.thread_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
                thread_id,
                after_seq,
                limit,
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
        sql, params = _inbox_query(agent, after, limit, kind, from_agent)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *params)
        return [InboxEntry(agent, int(row["cursor"]), _entry(row)) for row in rows]

    async def inbox_page(
        self,
        agent: str,
        after: int,
        limit: int,
        kind: WaitKind = "message",
        from_agent: str | None = None,
    ) -> tuple[list[InboxEntry], int]:
        """``inbox(...)`` and the agent's newest cursor, from one snapshot."""
        sql, params = _inbox_query(agent, after, limit, kind, from_agent)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await conn.fetch(sql, *params)
            head = await conn.fetchval(
                "SELECT head FROM coordination_inbox_heads WHERE agent = $1", agent
            )
        entries = [InboxEntry(agent, int(row["cursor"]), _entry(row)) for row in rows]
        return entries, int(head or 0)

    async def inbox_cursor(self, agent: str) -> int:
        """The newest cursor in ``agent``'s inbox (0 when empty)."""
        async with self._pool.acquire() as conn:
            head = await conn.fetchval(
                "SELECT head FROM coordination_inbox_heads WHERE agent = $1", agent
            )
        return int(head or 0)

    async def due_threads(self, now_ms: int) -> list[str]:
        """Ids of open threads whose strategy asked to be woken at or before now."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id FROM coordination_threads WHERE wake_at IS NOT NULL"
                " AND wake_at <= $1 AND state = 'open' ORDER BY wake_at, id COLLATE \"C\"",
                now_ms,
            )
        return [str(row["id"]) for row in rows]

    async def next_wake_at(self) -> int | None:
        """The earliest wake time any open thread asked for, or None."""
        async with self._pool.acquire() as conn:
            wake = await conn.fetchval(
                "SELECT MIN(wake_at) FROM coordination_threads"
                " WHERE wake_at IS NOT NULL AND state = 'open'"
            )
        return int(wake) if wake is not None else None


class _Scope:
    """A PostgreSQL write as its hooks see it (``WriteScope``): deferred statements, history."""

    __slots__ = ("_history", "_thread_id", "_through", "statements")

    def __init__(
        self,
        statements: DeferredStatements,
        thread_id: str,
        history: list[ThreadEntry],
        through: int = 0,
    ) -> None:
        self.statements = statements
        self._thread_id = thread_id
        self._history = history
        self._through = through

    @property
    def transaction(self) -> DeferredStatements:
        return self.statements

    def entries_through(self, thread_id: str, through_seq: int) -> list[ThreadEntry]:
        if thread_id != self._thread_id or through_seq > self._through:
            raise ValueError("a hook reads only the written thread's granted history")
        return [e for e in self._history if e.seq <= through_seq]


async def _entries_through(
    conn: asyncpg.Connection, thread_id: str, through_seq: int
) -> list[ThreadEntry]:
    rows = await conn.fetch(
        f"SELECT {_ENTRY_COLUMNS} FROM coordination_entries e"
        " WHERE e.thread_id = $1 AND e.seq <= $2 ORDER BY e.seq",
        thread_id,
        through_seq,
    )
    return [_entry(row) for row in rows]


def _inbox_query(
    agent: str, after: int, limit: int, kind: WaitKind, from_agent: str | None
) -> tuple[str, list[object]]:
    sql = (
        f"SELECT i.seq AS cursor, {_ENTRY_COLUMNS} FROM coordination_inbox i"
        " JOIN coordination_entries e ON e.thread_id = i.thread_id AND e.seq = i.entry_seq"
        " WHERE i.agent = $1 AND i.seq > $2"
    )
    params: list[object] = [agent, after]
    if kind == "mention":
        sql += " AND i.mentioned"
    elif kind == "agent":
        params.append(from_agent)
        sql += f" AND i.sender = ${len(params)}"
    params.append(limit)
    return sql + f" ORDER BY i.seq LIMIT ${len(params)}", params


async def _write_thread(conn: asyncpg.Connection, write: ThreadWrite) -> None:
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
        thread.id,
    )
    if write.expected_last_seq is None:
        created = await conn.fetchval(
            f"INSERT INTO coordination_threads ({_THREAD_COLUMNS}) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (id) DO NOTHING RETURNING 1",
            *values,
        )
        if created is None:
            raise ThreadExists(f"thread {thread.id} already exists")
    else:
        # Locks the row: a concurrent writer with the same expectation waits here,
        # then re-checks last_seq against what this write committed.
        status = await conn.execute(
            "UPDATE coordination_threads SET session_id = $1, name = $2, creator = $3,"
            " participants = $4, state = $5, summary = $6, strategy = $7,"
            " strategy_options = $8, strategy_state = $9, created_at = $10, closed_at = $11,"
            " last_seq = $12, wake_at = $13 WHERE id = $14 AND last_seq = $15",
            *values,
            write.expected_last_seq,
        )
        if status != "UPDATE 1":
            raise ConcurrentUpdate(f"thread {thread.id} changed; retry")
        if not write.membership_changed:
            return
        await conn.execute("DELETE FROM coordination_participants WHERE thread_id = $1", thread.id)
    await conn.execute(
        "INSERT INTO coordination_participants (thread_id, agent)"
        " SELECT $1, agent FROM unnest($2::text[]) AS agent",
        thread.id,
        list(thread.participants),
    )


async def _lock_heads(conn: asyncpg.Connection, agents: set[str]) -> dict[str, int]:
    """Each agent's newest inbox cursor, its head row locked until commit."""
    if not agents:
        return {}
    ordered = sorted(agents)
    await conn.execute(
        "INSERT INTO coordination_inbox_heads (agent, head)"
        " SELECT agent, 0 FROM unnest($1::text[]) AS agent ON CONFLICT (agent) DO NOTHING",
        ordered,
    )
    rows = await conn.fetch(
        "SELECT agent, head FROM coordination_inbox_heads WHERE agent = ANY($1::text[])"
        " ORDER BY agent FOR UPDATE",
        ordered,
    )
    return {str(row["agent"]): int(row["head"]) for row in rows}


async def _apply(conn: asyncpg.Connection, write: ThreadWrite) -> list[InboxEntry]:
    await _write_thread(conn, write)
    thread_id = write.thread.id
    recipients = {a for pending in write.entries for a in pending.recipients}
    heads = await _lock_heads(conn, recipients | {g.agent for g in write.grants})
    start = dict(heads)
    inbox: list[tuple[str, int, int, str, bool]] = []
    for grant in write.grants:
        inbox += await _grant_rows(conn, thread_id, grant, heads)
    if write.entries:
        entries = [pending.entry for pending in write.entries]
        try:
            await _insert_entries(conn, thread_id, entries, skip_stored=False)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "coordination_entries_message_id":
                raise DuplicateMessage("a message with this id is already stored") from None
            raise ConcurrentUpdate(f"thread {thread_id} changed; retry") from None
    delivered: list[InboxEntry] = []
    for pending in write.entries:
        entry, mentions = pending.entry, pending.entry.message.mentions
        for agent in pending.recipients:
            heads[agent] += 1
            delivered.append(InboxEntry(agent, heads[agent], entry))
            inbox.append((agent, heads[agent], entry.seq, entry.sender, agent in mentions))
    await _write_inbox(conn, thread_id, inbox, heads, start)
    return delivered


async def _grant_rows(
    conn: asyncpg.Connection, thread_id: str, grant: HistoryGrant, heads: dict[str, int]
) -> list[tuple[str, int, int, str, bool]]:
    """Inbox rows delivering entries 1..through_seq to a joining agent (advances its head)."""
    history = await conn.fetch(
        "SELECT seq, sender, mentions FROM coordination_entries"
        " WHERE thread_id = $1 AND seq <= $2 ORDER BY seq",
        thread_id,
        grant.through_seq,
    )
    rows: list[tuple[str, int, int, str, bool]] = []
    for row in history:
        heads[grant.agent] += 1
        mentioned = grant.agent in json.loads(row["mentions"])
        rows.append((grant.agent, heads[grant.agent], row["seq"], row["sender"], mentioned))
    return rows


async def _write_inbox(
    conn: asyncpg.Connection,
    thread_id: str,
    inbox: list[tuple[str, int, int, str, bool]],
    heads: dict[str, int],
    start: dict[str, int],
) -> None:
    """Insert inbox rows (agent, cursor, entry seq, sender, mentioned) and move the heads."""
    if not inbox:
        return
    await conn.execute(
        "INSERT INTO coordination_inbox (agent, seq, thread_id, entry_seq, sender, mentioned)"
        " SELECT agent, seq, $1, entry_seq, sender, mentioned FROM unnest($2::text[],"
        " $3::bigint[], $4::bigint[], $5::text[], $6::boolean[])"
        " AS r(agent, seq, entry_seq, sender, mentioned)",
        thread_id,
        *(list(column) for column in zip(*inbox, strict=True)),
    )
    moved = [agent for agent in sorted(heads) if heads[agent] != start[agent]]
    await conn.execute(
        "UPDATE coordination_inbox_heads h SET head = r.head"
        " FROM unnest($1::text[], $2::bigint[]) AS r(agent, head) WHERE h.agent = r.agent",
        moved,
        [heads[agent] for agent in moved],
    )


async def _insert_entries(
    conn: asyncpg.Connection, thread_id: str, entries: Sequence[ThreadEntry], *, skip_stored: bool
) -> set[int]:
    """Insert log entries; returns the seqs inserted (with ``skip_stored``, conflicts are skipped).

    Raises:
        asyncpg.UniqueViolationError: without ``skip_stored``, a message id or seq is taken.
    """
    rows = await conn.fetch(
        "INSERT INTO coordination_entries (thread_id, seq, message_id, sender, mentions,"
        " system, recorded_at, wire) SELECT $1, * FROM unnest($2::bigint[], $3::text[],"
        " $4::text[], $5::text[], $6::boolean[], $7::bigint[], $8::text[])"
        + (" ON CONFLICT DO NOTHING" if skip_stored else "")
        + " RETURNING seq",
        thread_id,
        [e.seq for e in entries],
        [e.message.id for e in entries],
        [e.message.sender for e in entries],
        [_json(list(e.message.mentions)) for e in entries],
        [e.system for e in entries],
        [e.recorded_at for e in entries],
        [canonical_wire(e.message).decode() for e in entries],
    )
    return {int(row["seq"]) for row in rows}


async def _mirror(
    conn: asyncpg.Connection,
    thread: Thread,
    entries: Sequence[tuple[ThreadEntry, Sequence[str]]],
    grants: Sequence[HistoryGrant],
) -> list[str]:
    # The mirrored thread row follows the owner's snapshot whenever it is newer.
    current = await conn.fetchval(
        "SELECT last_seq FROM coordination_threads WHERE id = $1 FOR UPDATE", thread.id
    )
    if current is None:
        await _write_thread(conn, ThreadWrite(thread, None))
    elif int(current) <= thread.last_seq:
        await _write_thread(conn, ThreadWrite(thread, int(current), membership_changed=True))
    stored: set[int] = set()
    if entries:
        stored = await _insert_entries(conn, thread.id, [e for e, _ in entries], skip_stored=True)
    # An entry already mirrored was already delivered: only fresh ones reach inboxes.
    fresh = [
        (entry, [a for a in recipients if a != entry.sender])
        for entry, recipients in entries
        if entry.seq in stored
    ]
    heads = await _lock_heads(
        conn, {g.agent for g in grants} | {a for _, targets in fresh for a in targets}
    )
    start = dict(heads)
    # Same order as a local write: the history a joiner is granted, then the new
    # entries' inbox rows, so a joiner's inbox reads history first.
    inbox: list[tuple[str, int, int, str, bool]] = []
    grew: set[str] = set()
    for grant in grants:
        history = await _grant_rows(conn, thread.id, grant, heads)
        inbox += history
        if history:
            grew.add(grant.agent)
    for entry, targets in fresh:
        mentions = entry.message.mentions
        for agent in targets:
            heads[agent] += 1
            inbox.append((agent, heads[agent], entry.seq, entry.sender, agent in mentions))
        grew.update(targets)
    await _write_inbox(conn, thread.id, inbox, heads, start)
    return sorted(grew)


def _thread(row: Any) -> Thread:
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
        created_at=int(row["created_at"]),
        closed_at=row["closed_at"],
        last_seq=int(row["last_seq"]),
        wake_at=row["wake_at"],
    )


def _entry(row: Any) -> ThreadEntry:
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
