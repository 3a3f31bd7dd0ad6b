"""The embedded SQLite database: one file, WAL, versioned migrations.

Each component (core, coordination, ledger, teams, federation, ...) owns an
ordered list of migrations and records how far it got in
``schema_migrations``; components migrate independently, so adding a table
in one never renumbers another's history.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from coral.protocol.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNAVAILABLE_MARKERS = ("full", "readonly", "read-only", "disk i/o", "locked", "unable to open")


def storage_error(exc: BaseException) -> BaseException:
    """Map SQLite's "cannot write now" failures to StorageUnavailable; others unchanged.

    Disk full, a read-only data dir, I/O errors and lock timeouts are the
    operator's to fix, not the caller's: callers get a typed 503/UNAVAILABLE.
    """
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if any(marker in text for marker in _UNAVAILABLE_MARKERS):
            return StorageUnavailable(f"storage unavailable: {exc}")
    return exc


WriteFn = Callable[[sqlite3.Connection], Any]
#: Most write functions folded into one transaction by group commit.
MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of a component's schema."""

    version: int
    sql: str


_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    PRIMARY KEY (component, version)
);
"""


class SqliteDatabase:
    """An aiosqlite connection with a write lock and per-component migrations.

    All writes go through ``transaction()``, which serializes writers (SQLite
    has one writer anyway) and commits or rolls back as a whole, so a failed
    operation never leaves half its rows behind.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._pending: list[tuple[WriteFn, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    async def open(self) -> None:
        """Open the file (creating it), enable WAL and foreign keys."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute(f"PRAGMA synchronous={self._synchronous}")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._conn.execute("PRAGMA busy_timeout=5000")
        await self._conn.executescript(_BOOTSTRAP)

    async def close(self) -> None:
        """Checkpoint the WAL and close; safe to call twice."""
        if self._conn is not None:
            async with self._write_lock:
                try:
                    await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError as exc:
                    # A statement still open (a cancelled read) blocks the checkpoint; the
                    # WAL is complete and is checkpointed at the next open, so close anyway.
                    log.info("WAL checkpoint skipped at close: %s", exc)
                await self._conn.close()
            self._conn = None

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the component's pending migrations in order; return its version."""
        async with self._write_lock:
            cur = await self.conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE component = ?",
                (component,),
            )
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for migration in sorted(migrations, key=lambda m: m.version):
                if migration.version <= current:
                    continue
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(migration.sql):
                        await self.conn.execute(statement)
                    await self.conn.execute(
                        "INSERT INTO schema_migrations(component, version) VALUES (?, ?)",
                        (component, migration.version),
                    )
                    await self.conn.execute("COMMIT")
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
                current = migration.version
            return current

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialize a write transaction; commit on success, roll back on any error."""
        async with self._write_lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise storage_error(exc) from exc
            except BaseException:
                # Cancelled while BEGIN was queued: it still runs on the database
                # thread, and a transaction left open there would refuse every
                # later BEGIN. Roll it back before giving up the write lock.
                await asyncio.shield(self._rollback())
                raise
            try:
                yield self.conn
            except sqlite3.OperationalError as exc:
                await asyncio.shield(self._rollback())
                raise storage_error(exc) from exc
            except BaseException:
                await asyncio.shield(self._rollback())
                raise
            else:
                try:
                    await self.conn.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    await self._rollback()
                    raise storage_error(exc) from exc

    async def _rollback(self) -> None:
        await self.run(_rollback_if_open)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a synchronous read function on the connection's thread in one hop."""
        try:
            result: T = await self.conn._execute(fn, self.conn._conn)  # type: ignore[no-untyped-call]
        except sqlite3.OperationalError as exc:
            raise storage_error(exc) from exc
        return result

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a write transaction, with group commit.

        Writers that arrive while a transaction is in flight are folded into
        the next one: each runs under its own SAVEPOINT, so one failing writer
        is rolled back alone and gets its exception, while the others commit
        together in one hop to the database thread. Returns ``fn``'s result
        once its transaction has committed.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop())
        return await future

    async def _flush_loop(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            async with self._write_lock:
                try:
                    outcomes = await self.conn._execute(  # type: ignore[no-untyped-call]
                        _run_group, self.conn._conn, batch
                    )
                except BaseException as exc:  # the commit itself failed: every writer failed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(storage_error(exc))
                    continue
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(storage_error(value))

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        """All rows of one query, in a single hop to the database thread."""
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        """The first row of one query, in a single hop to the database thread."""
        row: aiosqlite.Row | None = await self.run(lambda c: c.execute(sql, params).fetchone())
        return row


def _run_group(
    raw: sqlite3.Connection, batch: list[tuple[WriteFn, asyncio.Future[Any]]]
) -> list[tuple[bool, Any]]:
    # Runs on the database thread: one transaction, a savepoint per writer.
    outcomes: list[tuple[bool, Any]] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for fn, _ in batch:
            raw.execute("SAVEPOINT w")
            try:
                value = fn(raw)
            except Exception as exc:
                raw.execute("ROLLBACK TO w")
                raw.execute("RELEASE w")
                outcomes.append((False, exc))
            else:
                raw.execute("RELEASE w")
                outcomes.append((True, value))
        raw.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (a failed COMMIT on a full disk);
        # a second ROLLBACK would raise and hide the real error.
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return outcomes


def _rollback_if_open(raw: sqlite3.Connection) -> None:
    # Runs on the database thread after whatever was queued before it.
    if raw.in_transaction:
        try:
            raw.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # SQLite already aborted it


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
