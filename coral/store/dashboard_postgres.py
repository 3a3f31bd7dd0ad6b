"""Read-only dashboard queries on the shared PostgreSQL database.

``PostgresDashboardReads`` implements ``coral.api.dashboard.ports.DashboardReads``
for a node whose stores live in PostgreSQL. Every replica of one logical node
reads the same tables, so every replica's dashboard shows the same threads,
messages, teams and ledger. The queries and the row shapes are those of
``coral.store.dashboard_sqlite`` (the row mappers are shared), in
PostgreSQL's dialect; ids sort with ``COLLATE "C"`` (bytewise, as SQLite
compares), so both backends list the same rows in the same order. Tables of
components that are not in this database come back empty, as on SQLite.

``SplitDashboardReads`` serves threads and teams from one source and the
ledger from another: the ``database_stores = "ledger"`` opt-out keeps threads
in the node's SQLite file but the ledger in PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from coral.api.dashboard.ports import DashboardReads, EntryRow, ThreadRow
from coral.store.dashboard_sqlite import (
    MAX_ROWS,
    account_view,
    entry_row,
    thread_row,
    transfer_view,
)

if TYPE_CHECKING:  # asyncpg is the optional "postgres" extra
    import asyncpg

#: Connections the dashboard's own pool may hold (one snapshot reads sequentially).
POOL_SIZE = 2


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_ROWS))


class PostgresDashboardReads:
    """``DashboardReads`` over the shared PostgreSQL database (the same on every replica).

    Give it a ``dsn`` (it opens a small pool of its own on first use and closes
    it in ``close``) or an open ``pool`` (the caller's, never closed here).

    Every read raises what the driver raises when the database cannot answer
    (``OSError``, ``asyncpg.PostgresError``); the snapshot then shows that panel
    as unavailable. Reads hold no state across an ``await``: a cancelled read
    leaves nothing behind (a pool opened for it stays, for the next read).
    """

    def __init__(self, dsn: str | None = None, *, pool: asyncpg.Pool | None = None) -> None:
        if (dsn is None) == (pool is None):
            raise ValueError("give exactly one of dsn and pool")
        self._dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self._opening = asyncio.Lock()  # one pool, however many snapshots ask at once

    async def _conn_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    from coral.store.postgres import open_pool

                    assert self._dsn is not None
                    self._pool = await open_pool(self._dsn, max_size=POOL_SIZE)
        return self._pool

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        pool = await self._conn_pool()
        return list(await pool.fetch(sql, *args))

    async def _table_exists(self, table: str) -> bool:
        # to_regclass resolves through search_path, as the stores' own queries do.
        pool = await self._conn_pool()
        return bool(await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table))

    async def recent_threads(self, limit: int) -> list[ThreadRow]:
        """The most recently active threads of every agent, newest activity first."""
        if not await self._table_exists("coordination_threads"):
            return []
        team_join = await self._table_exists("team_threads")
        team_col = "tt.team_id" if team_join else "NULL"
        join = " LEFT JOIN team_threads tt ON tt.thread_id = t.id" if team_join else ""
        rows = await self._fetch(
            f"SELECT t.id, t.name, t.creator, t.participants, t.state, t.summary, t.strategy,"
            f" t.created_at, t.closed_at, t.last_seq, {team_col} AS team_id,"
            " COALESCE((SELECT e.recorded_at FROM coordination_entries e"
            "  WHERE e.thread_id = t.id ORDER BY e.seq DESC LIMIT 1), t.created_at) AS active_at"
            f" FROM coordination_threads t{join}"
            ' ORDER BY active_at DESC, t.id COLLATE "C" DESC LIMIT $1',
            _limit(limit),
        )
        return [thread_row(r) for r in rows]

    async def recent_entries(self, thread_id: str, limit: int) -> list[EntryRow]:
        """The last ``limit`` entries of one thread, oldest first."""
        if not await self._table_exists("coordination_entries"):
            return []
        rows = await self._fetch(
            "SELECT thread_id, seq, system, recorded_at, wire FROM coordination_entries"
            " WHERE thread_id = $1 ORDER BY seq DESC LIMIT $2",
            thread_id,
            _limit(limit),
        )
        return [entry_row(r) for r in reversed(rows)]

    async def coordination_totals(self) -> dict[str, int]:
        """Counts of open and closed threads and of stored entries, across every replica."""
        if not await self._table_exists("coordination_threads"):
            return {"threads_open": 0, "threads_closed": 0, "entries": 0}
        row = (
            await self._fetch(
                "SELECT"
                " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'open') AS open_count,"
                " (SELECT COUNT(*) FROM coordination_threads WHERE state = 'closed')"
                " AS closed_count,"
                " (SELECT COUNT(*) FROM coordination_entries) AS entry_count"
            )
        )[0]
        return {
            "threads_open": int(row["open_count"]),
            "threads_closed": int(row["closed_count"]),
            "entries": int(row["entry_count"]),
        }

    async def recent_team_ids(self, limit: int) -> list[str]:
        """Ids of the most recently proposed teams: descending id order, as on SQLite.

        That is newest first for the ids the node makes ("team-" + a ULID, time first).
        """
        if not await self._table_exists("team_charters"):
            return []
        rows = await self._fetch(
            'SELECT team_id FROM team_charters ORDER BY team_id COLLATE "C" DESC LIMIT $1',
            _limit(limit),
        )
        return [str(r["team_id"]) for r in rows]

    async def ledger_accounts(self, limit: int) -> list[dict[str, Any]]:
        """Accounts with their posted and pending balances, largest balance first."""
        if not await self._table_exists("ledger_accounts"):
            return []
        rows = await self._fetch(
            "SELECT id, ledger, owner, kind, debits_pending, debits_posted, credits_pending,"
            " credits_posted FROM ledger_accounts"
            ' ORDER BY ABS(credits_posted - debits_posted) DESC, id COLLATE "C" LIMIT $1',
            _limit(limit),
        )
        return [account_view(r) for r in rows]

    async def ledger_pending(self, limit: int) -> list[dict[str, Any]]:
        """Escrow holds not yet posted, voided or expired, soonest expiry first."""
        if not await self._table_exists("ledger_transfers"):
            return []
        # Flag 2 is PENDING (coral.ledger.model.TransferFlags); a resolution row ends a hold.
        rows = await self._fetch(
            "SELECT t.id, t.debit_account, t.credit_account, t.amount, t.ledger, t.memo,"
            " t.created_at, t.expires_at FROM ledger_transfers t"
            " WHERE (t.flags & 2) != 0 AND NOT EXISTS"
            "  (SELECT 1 FROM ledger_resolutions r WHERE r.pending_id = t.id)"
            " ORDER BY t.expires_at, t.seq LIMIT $1",
            _limit(limit),
        )
        return [dict(transfer_view(r), expires_at=int(r["expires_at"])) for r in rows]

    async def ledger_recent_transfers(self, limit: int) -> list[dict[str, Any]]:
        """The newest transfers of every account, newest first."""
        if not await self._table_exists("ledger_transfers"):
            return []
        rows = await self._fetch(
            "SELECT id, debit_account, credit_account, amount, ledger, memo, created_at"
            " FROM ledger_transfers ORDER BY seq DESC LIMIT $1",
            _limit(limit),
        )
        return [transfer_view(r) for r in rows]

    async def close(self) -> None:
        """Close the pool this object opened (safe to call twice; a given pool stays open)."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


class SplitDashboardReads:
    """Threads and teams from ``stores``, the ledger panel from ``ledger``.

    For ``database_stores = "ledger"``: threads stay in the node's SQLite file
    while the ledger is in PostgreSQL.
    """

    def __init__(self, stores: DashboardReads, ledger: DashboardReads) -> None:
        self._stores = stores
        self._ledger = ledger

    async def recent_threads(self, limit: int) -> list[ThreadRow]:
        """The most recently active threads of every agent, from ``stores``."""
        return await self._stores.recent_threads(limit)

    async def recent_entries(self, thread_id: str, limit: int) -> list[EntryRow]:
        """The last ``limit`` entries of one thread, from ``stores``."""
        return await self._stores.recent_entries(thread_id, limit)

    async def coordination_totals(self) -> dict[str, int]:
        """Thread and entry counts, from ``stores``."""
        return await self._stores.coordination_totals()

    async def recent_team_ids(self, limit: int) -> list[str]:
        """Ids of the most recently proposed teams, from ``stores``."""
        return await self._stores.recent_team_ids(limit)

    async def ledger_accounts(self, limit: int) -> list[dict[str, Any]]:
        """Accounts with their balances, from ``ledger``."""
        return await self._ledger.ledger_accounts(limit)

    async def ledger_pending(self, limit: int) -> list[dict[str, Any]]:
        """Open escrow holds, from ``ledger``."""
        return await self._ledger.ledger_pending(limit)

    async def ledger_recent_transfers(self, limit: int) -> list[dict[str, Any]]:
        """The newest transfers, from ``ledger``."""
        return await self._ledger.ledger_recent_transfers(limit)

    async def close(self) -> None:
        """Close both sources (safe to call twice)."""
        try:
            await self._stores.close()
        finally:
            await self._ledger.close()
