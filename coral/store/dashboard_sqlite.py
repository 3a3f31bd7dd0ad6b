"""Read-only queries for the operator dashboard, across every component's tables.

``SqliteDashboardReads`` implements ``coral.api.dashboard.ports.DashboardReads``.
The domain services answer questions for one agent at a time (an agent sees
only its own threads); an operator needs the whole node at a glance. These
helpers read the tables directly and never write. Tables of components a
node does not run (ledger, teams) may be absent: every helper then returns
an empty result instead of failing. The ledger keeps its own file; it is read
through ``ReadOnlySqlite``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from coral.api.dashboard.ports import EntryRow, ThreadRow

#: Largest page any helper returns, whatever the caller asks for.
MAX_ROWS = 200


class RowSource(Protocol):
    """What the helpers need from a database: ``SqliteDatabase`` or ``ReadOnlySqlite``."""

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Any]: ...

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Any: ...


class ReadOnlySqlite:
    """A query-only connection to another component's SQLite file (the ledger's own).

    Opened on first use with ``mode=ro``, so the dashboard can never write to it
    and never queues behind that component's writer.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            self._conn = await aiosqlite.connect(uri, uri=True)
            self._conn.row_factory = aiosqlite.Row
        return self._conn

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """All rows of one query."""
        conn = await self._connection()
        async with conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> Any:
        """The first row of one query, or None."""
        conn = await self._connection()
        async with conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def close(self) -> None:
        """Close the connection (safe to call twice)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))


def thread_row(r: Any) -> ThreadRow:
    """One ``coordination_threads`` row (with ``team_id``) as the dashboard sees it."""
    return ThreadRow(
        id=r["id"],
        name=r["name"],
        creator=r["creator"],
        participants=list(json.loads(r["participants"])),
        state=r["state"],
        summary=r["summary"],
        strategy=r["strategy"],
        created_at=int(r["created_at"]),
        closed_at=None if r["closed_at"] is None else int(r["closed_at"]),
        last_seq=int(r["last_seq"]),
        team_id=r["team_id"],
    )


def entry_row(r: Any) -> EntryRow:
    """One ``coordination_entries`` row with its stored wire message decoded."""
    return EntryRow(
        thread_id=r["thread_id"],
        seq=int(r["seq"]),
        system=bool(r["system"]),
        recorded_at=int(r["recorded_at"]),
        message=json.loads(r["wire"]),
    )


def account_view(r: Any) -> dict[str, Any]:
    """One ``ledger_accounts`` row as the ledger panel shows it."""
    return {
        "id": r["id"],
        "ledger": r["ledger"],
        "owner": r["owner"],
        "kind": r["kind"],
        "balance": int(r["credits_posted"]) - int(r["debits_posted"]),
        "pending_in": int(r["credits_pending"]),
        "pending_out": int(r["debits_pending"]),
    }


async def table_exists(db: RowSource, table: str) -> bool:
    """True when ``table`` exists in the node's database."""
    row = await db.fetchone(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    )
    return row is not None


async def recent_threads(db: RowSource, limit: int = 20) -> list[ThreadRow]:
    """The most recently active threads of every agent, newest activity first."""
    if not await table_exists(db, "coordination_threads"):
        return []
    team_join = await table_exists(db, "team_threads")
    team_col = "tt.team_id" if team_join else "NULL"
    join = " LEFT JOIN team_threads tt ON tt.thread_id = t.id" if team_join else ""
    # Ordering by the newest entry (not creation) keeps busy threads on top.
    rows = await db.fetchall(
        f"SELECT t.id, t.name, t.creator, t.participants, t.state, t.summary, t.strategy,"
        f" t.created_at, t.closed_at, t.last_seq, {team_col} AS team_id,"
        " COALESCE((SELECT e.recorded_at FROM coordination_entries e"
        "  WHERE e.thread_id = t.id ORDER BY e.seq DESC LIMIT 1), t.created_at) AS active_at"
        f" FROM coordination_threads t{join}"
        " ORDER BY active_at DESC, t.id DESC LIMIT ?",
        (_limit(limit),),
    )
    return [thread_row(r) for r in rows]


async def recent_entries(db: RowSource, thread_id: str, limit: int = 10) -> list[EntryRow]:
    """The last ``limit`` entries of one thread, oldest first."""
    if not await table_exists(db, "coordination_entries"):
        return []
    rows = await db.fetchall(
        "SELECT thread_id, seq, system, recorded_at, wire FROM coordination_entries"
        " WHERE thread_id = ? ORDER BY seq DESC LIMIT ?",
        (thread_id, _limit(limit)),
    )
    return [entry_row(r) for r in reversed(rows)]


async def coordination_totals(db: RowSource) -> dict[str, int]:
    """Counts of open and closed threads and of stored entries."""
    if not await table_exists(db, "coordination_threads"):
        return {"threads_open": 0, "threads_closed": 0, "entries": 0}
    row = await db.fetchone(
        "SELECT"
        " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'open') AS open_count,"
        " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'closed') AS closed_count,"
        " (SELECT COUNT(*) FROM coordination_entries) AS entry_count"
    )
    assert row is not None
    return {
        "threads_open": int(row["open_count"]),
        "threads_closed": int(row["closed_count"]),
        "entries": int(row["entry_count"]),
    }


async def recent_team_ids(db: RowSource, limit: int = 20) -> list[str]:
    """Ids of the most recently proposed teams: descending id order.

    That is newest first for the ids the node makes ("team-" + a ULID, time
    first); it is not the insertion order (rowid), which PostgreSQL lacks, so
    both backends list the same teams in the same order.
    """
    if not await table_exists(db, "team_charters"):
        return []
    rows = await db.fetchall(
        "SELECT team_id FROM team_charters ORDER BY team_id DESC LIMIT ?", (_limit(limit),)
    )
    return [str(r["team_id"]) for r in rows]


async def ledger_accounts(db: RowSource, limit: int = 50) -> list[dict[str, Any]]:
    """Accounts with their posted and pending balances, largest balance first."""
    if not await table_exists(db, "ledger_accounts"):
        return []
    rows = await db.fetchall(
        "SELECT id, ledger, owner, kind, debits_pending, debits_posted, credits_pending,"
        " credits_posted FROM ledger_accounts"
        " ORDER BY ABS(credits_posted - debits_posted) DESC, id LIMIT ?",
        (_limit(limit),),
    )
    return [account_view(r) for r in rows]


async def ledger_pending(db: RowSource, limit: int = 50) -> list[dict[str, Any]]:
    """Escrow holds: pending transfers not yet posted, voided or expired, soonest expiry first."""
    if not await table_exists(db, "ledger_transfers"):
        return []
    # Flag 2 is PENDING (coral.ledger.model.TransferFlags); a resolution row ends a hold.
    rows = await db.fetchall(
        "SELECT t.id, t.debit_account, t.credit_account, t.amount, t.ledger, t.memo,"
        " t.created_at, t.expires_at FROM ledger_transfers t"
        " WHERE (t.flags & 2) != 0 AND NOT EXISTS"
        "  (SELECT 1 FROM ledger_resolutions r WHERE r.pending_id = t.id)"
        " ORDER BY t.expires_at, t.seq LIMIT ?",
        (_limit(limit),),
    )
    return [dict(transfer_view(r), expires_at=int(r["expires_at"])) for r in rows]


async def ledger_recent_transfers(db: RowSource, limit: int = 20) -> list[dict[str, Any]]:
    """The newest transfers of every account, newest first."""
    if not await table_exists(db, "ledger_transfers"):
        return []
    rows = await db.fetchall(
        "SELECT id, debit_account, credit_account, amount, ledger, memo, created_at"
        " FROM ledger_transfers ORDER BY seq DESC LIMIT ?",
        (_limit(limit),),
    )
    return [transfer_view(r) for r in rows]


def transfer_view(row: Any) -> dict[str, Any]:
    """One transfer row as the ledger panel shows it."""
    return {
        "id": row["id"],
        "from": row["debit_account"],
        "to": row["credit_account"],
        "amount": int(row["amount"]),
        "ledger": row["ledger"],
        "memo": row["memo"],
        "created_at": int(row["created_at"]),
    }


class SqliteDashboardReads:
    """``DashboardReads`` over the node database and, read-only, the ledger's own file."""

    def __init__(self, db: RowSource, ledger_path: Path) -> None:
        self._db = db
        self._ledger_path = ledger_path
        self._ledger: ReadOnlySqlite | None = None

    def _ledger_db(self) -> ReadOnlySqlite:
        if self._ledger is None:
            self._ledger = ReadOnlySqlite(self._ledger_path)
        return self._ledger

    async def recent_threads(self, limit: int) -> list[ThreadRow]:
        """The most recently active threads of every agent, newest activity first."""
        return await recent_threads(self._db, limit)

    async def recent_entries(self, thread_id: str, limit: int) -> list[EntryRow]:
        """The last ``limit`` entries of one thread, oldest first."""
        return await recent_entries(self._db, thread_id, limit)

    async def coordination_totals(self) -> dict[str, int]:
        """Counts of open and closed threads and of stored entries."""
        return await coordination_totals(self._db)

    async def recent_team_ids(self, limit: int) -> list[str]:
        """Ids of the most recently proposed teams (newest first)."""
        return await recent_team_ids(self._db, limit)

    async def ledger_accounts(self, limit: int) -> list[dict[str, Any]]:
        """Accounts with their balances, from the ledger's file (opened on first use)."""
        return await ledger_accounts(self._ledger_db(), limit)

    async def ledger_pending(self, limit: int) -> list[dict[str, Any]]:
        """Open escrow holds, from the ledger's file."""
        return await ledger_pending(self._ledger_db(), limit)

    async def ledger_recent_transfers(self, limit: int) -> list[dict[str, Any]]:
        """The newest transfers, from the ledger's file."""
        return await ledger_recent_transfers(self._ledger_db(), limit)

    async def close(self) -> None:
        """Close the read-only ledger connection (safe to call twice)."""
        if self._ledger is not None:
            await self._ledger.close()
            self._ledger = None
