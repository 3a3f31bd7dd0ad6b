"""SQLite adapter for the ledger: durable group commit on an embedded file.

Writes go through one ``LedgerWriter`` (so concurrent submitters share a
fsync); each group runs whole (loads, state machine, inserts, one UPDATE per
touched account) in one ``SqliteDatabase.transact()`` call on the database
thread, one hand-off per group. The ledger insists on
``PRAGMA synchronous=FULL`` so an acknowledged transfer survives power loss.
Transfer rows are insert-only (triggers refuse UPDATE and DELETE); balances
change in the same transaction. Reads use a second connection, which sees
only committed state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from coral.ledger.batch import Submission, SubmissionResult, apply_group_sync
from coral.ledger.model import (
    Account,
    AccountFlags,
    AccountKind,
    AccountResult,
    HistoryEntry,
    LedgerChanges,
    PendingStatus,
    Resolution,
    Transfer,
    TransferFlags,
    TransferResult,
)
from coral.ledger.state import LedgerState
from coral.store._ledger_writer import LedgerWriter
from coral.store.group_commit import GroupCommitStats
from coral.store.sqlite import Migration, SqliteDatabase

COMPONENT = "ledger"
_CHUNK = 500  # stays far below SQLite's bound-parameter limit

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE ledger_accounts (
            id TEXT PRIMARY KEY,
            ledger TEXT NOT NULL,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL,
            flags INTEGER NOT NULL,
            debits_pending INTEGER NOT NULL CHECK (debits_pending >= 0),
            debits_posted INTEGER NOT NULL CHECK (debits_posted >= 0),
            credits_pending INTEGER NOT NULL CHECK (credits_pending >= 0),
            credits_posted INTEGER NOT NULL CHECK (credits_posted >= 0),
            created_at INTEGER NOT NULL
        );
        CREATE TABLE ledger_transfers (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            debit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
            credit_account TEXT NOT NULL REFERENCES ledger_accounts(id),
            amount INTEGER NOT NULL CHECK (amount > 0),
            ledger TEXT NOT NULL,
            flags INTEGER NOT NULL,
            pending_id TEXT NOT NULL,
            timeout_ms INTEGER NOT NULL,
            condition TEXT NOT NULL,
            fulfillment TEXT NOT NULL,
            memo TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            request_digest TEXT NOT NULL
        );
        CREATE INDEX ledger_transfers_by_debit ON ledger_transfers(debit_account, seq);
        CREATE INDEX ledger_transfers_by_credit ON ledger_transfers(credit_account, seq);
        CREATE TABLE ledger_resolutions (
            pending_id TEXT PRIMARY KEY REFERENCES ledger_transfers(id),
            status TEXT NOT NULL,
            resolved_at INTEGER NOT NULL,
            by_transfer TEXT NOT NULL
        );
        CREATE TABLE ledger_open_deadlines (
            pending_id TEXT PRIMARY KEY REFERENCES ledger_transfers(id),
            expires_at INTEGER NOT NULL
        );
        CREATE INDEX ledger_open_deadlines_by_time ON ledger_open_deadlines(expires_at)
        """,
    )
]

# Trigger bodies contain ';', which SqliteDatabase.migrate splits on, so they are
# (re)created idempotently at start instead of inside a migration.
_IMMUTABILITY_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS ledger_transfers_no_update BEFORE UPDATE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger transfers are immutable'); END;
CREATE TRIGGER IF NOT EXISTS ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger transfers are immutable'); END;
CREATE TRIGGER IF NOT EXISTS ledger_resolutions_no_update BEFORE UPDATE ON ledger_resolutions
BEGIN SELECT RAISE(ABORT, 'ledger resolutions are immutable'); END;
"""

ACCOUNT_COLUMNS = (
    "id, ledger, owner, kind, flags, debits_pending, debits_posted, "
    "credits_pending, credits_posted, created_at"
)
TRANSFER_COLUMNS = (
    "id, debit_account, credit_account, amount, ledger, flags, pending_id, timeout_ms, "
    "condition, fulfillment, memo, created_at, expires_at, request_digest"
)


class Row(Protocol):
    """What both aiosqlite.Row and asyncpg.Record offer: lookup by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def account_from_row(row: Row) -> Account:
    """Rebuild an Account from a database row (SQLite or PostgreSQL)."""
    return Account(
        id=row["id"],
        ledger=row["ledger"],
        owner=row["owner"],
        kind=AccountKind(row["kind"]),
        flags=AccountFlags(row["flags"]),
        debits_pending=row["debits_pending"],
        debits_posted=row["debits_posted"],
        credits_pending=row["credits_pending"],
        credits_posted=row["credits_posted"],
        created_at=row["created_at"],
    )


def account_values(a: Account) -> tuple[Any, ...]:
    """An Account as a tuple in ACCOUNT_COLUMNS order."""
    return (
        a.id,
        a.ledger,
        a.owner,
        str(a.kind),
        int(a.flags),
        a.debits_pending,
        a.debits_posted,
        a.credits_pending,
        a.credits_posted,
        a.created_at,
    )


def balance_values(a: Account) -> tuple[int | str, ...]:
    """The four balances followed by the id, for an UPDATE statement."""
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.id)


def transfer_from_row(row: Row) -> Transfer:
    """Rebuild a Transfer from a database row (SQLite or PostgreSQL)."""
    return Transfer(
        id=row["id"],
        debit_account=row["debit_account"],
        credit_account=row["credit_account"],
        amount=row["amount"],
        ledger=row["ledger"],
        flags=TransferFlags(row["flags"]),
        pending_id=row["pending_id"],
        timeout_ms=row["timeout_ms"],
        condition=row["condition"],
        fulfillment=row["fulfillment"],
        memo=row["memo"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        request_digest=row["request_digest"],
    )


def transfer_values(t: Transfer) -> tuple[Any, ...]:
    """A Transfer as a tuple in TRANSFER_COLUMNS order."""
    return (
        t.id,
        t.debit_account,
        t.credit_account,
        t.amount,
        t.ledger,
        int(t.flags),
        t.pending_id,
        t.timeout_ms,
        t.condition,
        t.fulfillment,
        t.memo,
        t.created_at,
        t.expires_at,
        t.request_digest,
    )


def resolution_from_row(row: Row) -> Resolution:
    """Rebuild a Resolution from a database row."""
    return Resolution(
        row["pending_id"], PendingStatus(row["status"]), row["resolved_at"], row["by_transfer"]
    )


def chunks(ids: Collection[str]) -> Iterator[list[str]]:
    """Split ids into lists small enough for one IN (...) clause."""
    items = list(ids)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class _SqliteLedgerTransaction:
    """SyncLedgerTransaction over an open ``BEGIN IMMEDIATE`` on the database thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def _select(self, sql: str, ids: Collection[str]) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = []
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            rows.extend(self._conn.execute(sql.format(marks=marks), part).fetchall())
        return rows

    def load_accounts(self, ids: Collection[str]) -> list[Account]:
        sql = f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id IN ({{marks}})"
        return [account_from_row(r) for r in self._select(sql, ids)]

    def load_transfers(self, ids: Collection[str]) -> list[Transfer]:
        sql = f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id IN ({{marks}})"
        return [transfer_from_row(r) for r in self._select(sql, ids)]

    def load_resolutions(self, pending_ids: Collection[str]) -> list[Resolution]:
        sql = "SELECT * FROM ledger_resolutions WHERE pending_id IN ({marks})"
        return [resolution_from_row(r) for r in self._select(sql, pending_ids)]

    def load_due_pendings(self, now_ms: int, limit: int) -> list[Transfer]:
        rows = self._conn.execute(
            f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id IN ("
            " SELECT pending_id FROM ledger_open_deadlines WHERE expires_at <= ?"
            " ORDER BY expires_at LIMIT ?)",
            (now_ms, limit),
        ).fetchall()
        return [transfer_from_row(r) for r in rows]

    def persist(self, changes: LedgerChanges) -> None:
        conn = self._conn
        if changes.accounts_created:
            conn.executemany(
                f"INSERT INTO ledger_accounts ({ACCOUNT_COLUMNS}) VALUES ({_marks(10)})",
                [account_values(a) for a in changes.accounts_created],
            )
        if changes.transfers_created:
            conn.executemany(
                f"INSERT INTO ledger_transfers ({TRANSFER_COLUMNS}) VALUES ({_marks(14)})",
                [transfer_values(t) for t in changes.transfers_created],
            )
            deadlines = [(t.id, t.expires_at) for t in changes.transfers_created if t.expires_at]
            if deadlines:
                conn.executemany(
                    "INSERT INTO ledger_open_deadlines (pending_id, expires_at) VALUES (?, ?)",
                    deadlines,
                )
        if changes.resolutions_created:
            conn.executemany(
                "INSERT INTO ledger_resolutions (pending_id, status, resolved_at, by_transfer)"
                " VALUES (?, ?, ?, ?)",
                [
                    (r.pending_id, str(r.status), r.resolved_at, r.by_transfer)
                    for r in changes.resolutions_created
                ],
            )
            conn.executemany(
                "DELETE FROM ledger_open_deadlines WHERE pending_id = ?",
                [(r.pending_id,) for r in changes.resolutions_created],
            )
        if changes.accounts_updated:
            # One row per account the group touched, with its final balances.
            conn.executemany(
                "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?,"
                " credits_pending = ?, credits_posted = ? WHERE id = ?",
                [balance_values(a) for a in changes.accounts_updated.values()],
            )


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteLedgerStore:
    """LedgerStore on a SQLite file, fully synchronous, with group commit."""

    def __init__(self, db: SqliteDatabase, *, max_group: int = 512) -> None:
        self._db = db
        self._writer = LedgerWriter(self._commit, max_group=max_group)
        self._reader: aiosqlite.Connection | None = None

    @classmethod
    async def open(cls, path: Path | str, *, max_group: int = 512) -> SqliteLedgerStore:
        """Open (creating) a dedicated ledger database file and start the store."""
        db = SqliteDatabase(path, synchronous="FULL")
        await db.open()
        store = cls(db, max_group=max_group)
        await store.start()
        return store

    async def start(self) -> None:
        """Force full durability, migrate the schema, open the read connection."""
        if self._db.path == ":memory:":
            raise ValueError("the ledger needs a database file, not :memory:")
        # Per-connection setting: an acknowledged transfer must survive power loss.
        await self._db.conn.execute("PRAGMA synchronous=FULL")
        await self._db.run(lambda conn: conn.execute("PRAGMA synchronous=FULL"))
        await self._db.migrate(COMPONENT, MIGRATIONS)
        await self._db.conn.executescript(_IMMUTABILITY_TRIGGERS)
        self._reader = await aiosqlite.connect(self._db.path, isolation_level=None)
        self._reader.row_factory = aiosqlite.Row
        await self._reader.execute("PRAGMA query_only=ON")

    async def close(self) -> None:
        """Commit queued writes, close the reader, then the database."""
        await self._writer.close()
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self._db.close()

    async def _commit(self, group: list[Submission]) -> list[SubmissionResult]:
        return await self._db.transact(
            lambda conn: apply_group_sync(_SqliteLedgerTransaction(conn), group)
        )

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

    # --- reads (committed state only) -----------------------------------------------------

    @property
    def _read(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("ledger store is not started")
        return self._reader

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        # One hop that runs the query to its end even if we are cancelled: a statement
        # left half-read would hold the reader's snapshot, hiding later commits.
        return list(await self._read.execute_fetchall(sql, params))

    async def get_account(self, account_id: str) -> Account | None:
        """See LedgerStore.get_account."""
        rows = await self._rows(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = ?", (account_id,)
        )
        return account_from_row(rows[0]) if rows else None

    async def get_transfer(self, transfer_id: str) -> Transfer | None:
        """See LedgerStore.get_transfer."""
        rows = await self._rows(
            f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ?", (transfer_id,)
        )
        return transfer_from_row(rows[0]) if rows else None

    async def get_resolution(self, pending_id: str) -> Resolution | None:
        """See LedgerStore.get_resolution."""
        rows = await self._rows(
            "SELECT * FROM ledger_resolutions WHERE pending_id = ?", (pending_id,)
        )
        return resolution_from_row(rows[0]) if rows else None

    async def history(self, account_id: str, after: int, limit: int) -> list[HistoryEntry]:
        """See LedgerStore.history."""
        rows = await self._rows(
            f"SELECT seq, {TRANSFER_COLUMNS} FROM ledger_transfers"
            " WHERE seq > ? AND (debit_account = ? OR credit_account = ?)"
            " ORDER BY seq LIMIT ?",
            (after, account_id, account_id, limit),
        )
        return [HistoryEntry(row["seq"], transfer_from_row(row)) for row in rows]

    async def escrow_held(self) -> int:
        """See LedgerStore.escrow_held (on the read connection: never behind the writer)."""
        rows = await self._rows("SELECT COALESCE(SUM(debits_pending), 0) FROM ledger_accounts")
        return int(rows[0][0])

    async def _end_read(self) -> None:
        try:
            await self._read.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "no transaction" not in str(exc):  # the BEGIN failed: nothing to end
                raise

    async def load_snapshot(self) -> LedgerState:
        """See LedgerStore.load_snapshot.

        Raises:
            sqlite3.Error: the reader connection failed.

        Cancellation: the read transaction is ended; nothing is written.
        """
        # One read transaction, so the three queries see the same commit. Even a
        # cancelled BEGIN runs on the reader's thread, so the COMMIT always follows.
        try:
            await self._read.execute("BEGIN")
            accounts = await self._rows(f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts")
            transfers = await self._rows(
                f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers ORDER BY seq"
            )
            resolutions = await self._rows("SELECT * FROM ledger_resolutions")
        finally:
            await self._end_read()
        return LedgerState(
            [account_from_row(r) for r in accounts],
            [transfer_from_row(r) for r in transfers],
            [resolution_from_row(r) for r in resolutions],
        )
