"""PostgreSQL adapter for the ledger (asyncpg), with the same semantics as SQLite.

The shared ``LedgerWriter`` runs each group in one transaction on one
pooled connection; account rows are locked ``FOR UPDATE`` (in id order, so
two writers cannot deadlock), which keeps balances right even if several
node processes share the database. Commits use the server's durable
defaults (``synchronous_commit=on``). Transfer rows are insert-only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from coral.ledger.model import (
    Account,
    AccountResult,
    HistoryEntry,
    LedgerChanges,
    Resolution,
    Transfer,
    TransferResult,
)
from coral.ledger.ports import LedgerTransaction
from coral.ledger.state import LedgerState
from coral.store._ledger_writer import LedgerWriter, in_transaction
from coral.store.group_commit import GroupCommitStats
from coral.store.ledger_sqlite import (
    ACCOUNT_COLUMNS,
    TRANSFER_COLUMNS,
    account_from_row,
    account_values,
    balance_values,
    resolution_from_row,
    transfer_from_row,
    transfer_values,
)
from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "ledger"

#: Schema steps; ``coral.store.postgres.migrate`` applies each once, under an advisory lock.
MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE ledger_accounts (
            id TEXT PRIMARY KEY,
            ledger TEXT NOT NULL,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL,
            flags INTEGER NOT NULL,
            debits_pending BIGINT NOT NULL CHECK (debits_pending >= 0),
            debits_posted BIGINT NOT NULL CHECK (debits_posted >= 0),
            credits_pending BIGINT NOT NULL CHECK (credits_pending >= 0),
            credits_posted BIGINT NOT NULL CHECK (credits_posted >= 0),
            created_at BIGINT NOT NULL
        );
        CREATE TABLE ledger_transfers (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            debit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
            credit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
            amount BIGINT NOT NULL CHECK (amount > 0),
            ledger TEXT NOT NULL,
            flags INTEGER NOT NULL,
            pending_id TEXT NOT NULL,
            timeout_ms BIGINT NOT NULL,
            condition TEXT NOT NULL,
            fulfillment TEXT NOT NULL,
            memo TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            request_digest TEXT NOT NULL
        );
        CREATE INDEX ledger_transfers_by_debit ON ledger_transfers(debit_account, seq);
        CREATE INDEX ledger_transfers_by_credit ON ledger_transfers(credit_account, seq);
        CREATE TABLE ledger_resolutions (
            pending_id TEXT PRIMARY KEY REFERENCES ledger_transfers(id),
            status TEXT NOT NULL,
            resolved_at BIGINT NOT NULL,
            by_transfer TEXT NOT NULL
        );
        CREATE TABLE ledger_open_deadlines (
            pending_id TEXT PRIMARY KEY REFERENCES ledger_transfers(id),
            expires_at BIGINT NOT NULL
        );
        CREATE INDEX ledger_open_deadlines_by_time ON ledger_open_deadlines(expires_at);
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger % rows are immutable', TG_TABLE_NAME;
        END $$;
        CREATE TRIGGER ledger_transfers_immutable BEFORE UPDATE OR DELETE ON ledger_transfers
            FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        CREATE TRIGGER ledger_resolutions_immutable BEFORE UPDATE OR DELETE
            ON ledger_resolutions FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        """,
    )
]


def _placeholders(count: int) -> str:
    return ", ".join(f"${i}" for i in range(1, count + 1))


class _PostgresLedgerTransaction:
    """LedgerTransaction over an open transaction on one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def load_working_set(
        self, transfer_ids: Collection[str], account_ids: Collection[str]
    ) -> LedgerState:
        row = await self._conn.fetchrow(_LOAD_WORKING_SET, list(transfer_ids), list(account_ids))
        assert row is not None  # an aggregate query always returns its one row
        return LedgerState(
            [account_from_row(r) for r in json.loads(row["accounts"])],
            [transfer_from_row(r) for r in json.loads(row["transfers"])],
            [resolution_from_row(r) for r in json.loads(row["resolutions"])],
        )

    async def load_due_pendings(self, now_ms: int, limit: int) -> list[Transfer]:
        rows = await self._conn.fetch(
            f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id IN ("
            " SELECT pending_id FROM ledger_open_deadlines WHERE expires_at <= $1"
            " ORDER BY expires_at LIMIT $2)",
            now_ms,
            limit,
        )
        return [transfer_from_row(r) for r in rows]

    async def persist(self, changes: LedgerChanges) -> None:
        # Each kind of row goes in one statement over arrays (unnest): one execution
        # on the server per group, not one per row.
        conn = self._conn
        if changes.accounts_created:
            await conn.executemany(
                f"INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS}) VALUES ({_placeholders(10)})",
                [account_values(a) for a in changes.accounts_created],
            )
        balances = changes.accounts_updated
        if changes.transfers_created:
            transfers = _columns(transfer_values(t) for t in changes.transfers_created)
            if balances:  # the common group: both in one statement, one round trip
                await conn.execute(
                    _INSERT_TRANSFERS_UPDATE_BALANCES,
                    *transfers,
                    *_columns(balance_values(a) for a in balances.values()),
                )
                balances = {}
            else:
                await conn.execute(_INSERT_TRANSFERS, *transfers)
            deadlines = [(t.id, t.expires_at) for t in changes.transfers_created if t.expires_at]
            if deadlines:
                await conn.executemany(
                    "INSERT INTO ledger_open_deadlines (pending_id, expires_at) VALUES ($1, $2)",
                    deadlines,
                )
        if changes.resolutions_created:
            await conn.executemany(
                "INSERT INTO ledger_resolutions (pending_id, status, resolved_at, by_transfer)"
                " VALUES ($1, $2, $3, $4)",
                [
                    (r.pending_id, str(r.status), r.resolved_at, r.by_transfer)
                    for r in changes.resolutions_created
                ],
            )
            await conn.execute(
                "DELETE FROM ledger_open_deadlines WHERE pending_id = ANY($1::text[])",
                [r.pending_id for r in changes.resolutions_created],
            )
        if balances:
            # One row per account the group touched, with its final balances.
            await conn.execute(
                _UPDATE_BALANCES, *_columns(balance_values(a) for a in balances.values())
            )


#: Column types of TRANSFER_COLUMNS, in order, for the unnest insert.
_TRANSFER_TYPES = (
    "text text text bigint text integer text bigint text text text bigint bigint text".split()
)
_INSERT_TRANSFERS = (
    f"INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_TRANSFER_TYPES, start=1))
    + ")"
)


def _update_balances(first: int) -> str:
    marks = [f"${i}" for i in range(first, first + 5)]
    return (
        "UPDATE ledger_accounts AS a SET debits_pending = u.dp, debits_posted = u.dpo,"
        " credits_pending = u.cp, credits_posted = u.cpo"
        f" FROM unnest({marks[0]}::bigint[], {marks[1]}::bigint[], {marks[2]}::bigint[],"
        f" {marks[3]}::bigint[], {marks[4]}::text[])"
        " AS u(dp, dpo, cp, cpo, id) WHERE a.id = u.id"
    )


_UPDATE_BALANCES = _update_balances(1)
_INSERT_TRANSFERS_UPDATE_BALANCES = (
    f"WITH inserted AS ({_INSERT_TRANSFERS}) {_update_balances(len(_TRANSFER_TYPES) + 1)}"
)
#: The group's transfers, their resolutions and every account they touch, locked in id
#: order (so two writers cannot deadlock), as three JSON arrays in one row.
_LOAD_WORKING_SET = f"""
WITH t AS (
    SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ANY($1::text[])
), a AS (
    SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts
    WHERE id = ANY(ARRAY(
        SELECT unnest($2::text[])
        UNION SELECT debit_account FROM t
        UNION SELECT credit_account FROM t
    ))
    ORDER BY id FOR UPDATE
)
SELECT
    (SELECT COALESCE(json_agg(t), '[]') FROM t) AS transfers,
    (SELECT COALESCE(json_agg(r), '[]') FROM ledger_resolutions AS r
        WHERE r.pending_id = ANY(ARRAY(SELECT id FROM t))) AS resolutions,
    (SELECT COALESCE(json_agg(a), '[]') FROM a) AS accounts
"""


def _columns(rows: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays an unnest statement takes)."""
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresLedgerStore:
    """LedgerStore on PostgreSQL with group commit; reads see committed state only.

    Built on a caller's ``pool`` (the node's shared one) the store never closes
    it; ``open`` connects a pool of its own, which ``close`` closes. Either way
    each group commits on one connection taken from the pool for that group only.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, max_group: int = 512, owns_pool: bool = False
    ) -> None:
        self._pool = pool
        self._owns_pool = owns_pool
        self._writer = LedgerWriter(in_transaction(self._begin), max_group=max_group)

    @classmethod
    async def open(
        cls, dsn: str, *, max_group: int = 512, pool_size: int = 4
    ) -> PostgresLedgerStore:
        """Connect a pool to ``dsn``, migrate the ledger schema, return a started store."""
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size)
        store = cls(pool, max_group=max_group, owns_pool=True)
        try:
            await store.start()
        except BaseException:
            await pool.close()
            raise
        return store

    async def start(self) -> None:
        """Apply pending ledger migrations (serialized by an advisory lock)."""
        await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def close(self) -> None:
        """Commit queued writes, then close the pool if this store opened it."""
        await self._writer.close()
        if self._owns_pool:
            await self._pool.close()

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[LedgerTransaction]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PostgresLedgerTransaction(conn)

    @property
    def group_commit_stats(self) -> GroupCommitStats:
        """How many submissions shared how many commits (for metrics)."""
        return self._writer.stats

    # --- writes (group-committed) -------------------------------------------------------

    async def create_accounts(self, batch: Sequence[Account], now_ms: int) -> list[AccountResult]:
        """See LedgerStore.create_accounts."""
        return await self._writer.create_accounts(batch, now_ms)

    async def create_transfers(
        self, batch: Sequence[Transfer], now_ms: int
    ) -> list[TransferResult]:
        """See LedgerStore.create_transfers."""
        return await self._writer.create_transfers(batch, now_ms)

    async def expire_due(self, now_ms: int) -> list[Resolution]:
        """See LedgerStore.expire_due."""
        return await self._writer.expire_due(now_ms)

    # --- reads ------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(sql, *args))

    async def get_account(self, account_id: str) -> Account | None:
        """See LedgerStore.get_account."""
        rows = await self._fetch(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = $1", account_id
        )
        return account_from_row(rows[0]) if rows else None

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        """See LedgerStore.get_transfer."""
        rows = await self._fetch(
            f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = $1", transfer_id
        )
        return transfer_from_row(rows[0]) if rows else None

    async def get_resolution(self, pending_id: str) -> Resolution | None:
        """See LedgerStore.get_resolution."""
        rows = await self._fetch(
            "SELECT * FROM ledger_resolutions WHERE pending_id = $1", pending_id
        )
        return resolution_from_row(rows[0]) if rows else None

    async def history(self, account_id: str, after: int, limit: int) -> list[HistoryEntry]:
        """See LedgerStore.history."""
        rows = await self._fetch(
            f"SELECT seq, {TRANSFER_COLUMNS} FROM ledger_transfers"
            " WHERE seq > $1 AND (debit_account = $2 OR credit_account = $2)"
            " ORDER BY seq LIMIT $3",
            after,
            account_id,
            limit,
        )
        return [HistoryEntry(row["seq"], transfer_from_row(row)) for row in rows]

    async def escrow_held(self) -> int:
        """See LedgerStore.escrow_held."""
        rows = await self._fetch("SELECT COALESCE(SUM(debits_pending), 0) FROM ledger_accounts")
        return int(rows[0][0])

    async def load_snapshot(self) -> LedgerState:
        """See LedgerStore.load_snapshot (one repeatable-read snapshot)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            accounts = await conn.fetch(f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts")
            transfers = await conn.fetch(
                f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers ORDER BY seq"
            )
            resolutions = await conn.fetch("SELECT * FROM ledger_resolutions")
        return LedgerState(
            [account_from_row(r) for r in accounts],
            [transfer_from_row(r) for r in transfers],
            [resolution_from_row(r) for r in resolutions],
        )
