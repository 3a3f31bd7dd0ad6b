"""The embedded SQLite database: one file, WAL, versioned migrations.

Each component (core, coordination, ledger, teams, federation, ...) owns an
ordered list of migrations and records how far it got in
``schema_migrations``; components migrate independently, so adding a table
in one never renumbers another's history.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from coral.protocol.errors import StorageUnavailable
from coral.store.group_commit import Failed, GroupCommitStats, GroupCommitter

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


class _Job:
    """One call waiting for, or running on, the connection's thread."""

    __slots__ = ("end_waiter", "ended", "fn", "future", "loop")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.ended = False
        self.end_waiter: asyncio.Future[None] | None = None


def _job_ended(job: _Job, ok: bool, value: Any) -> None:
    # On the event loop: deliver the outcome unless the caller gave up waiting.
    job.ended = True
    if not job.future.done():
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)
    if job.end_waiter is not None and not job.end_waiter.done():
        job.end_waiter.set_result(None)


class _ConnectionThread:
    """A plain sqlite3 connection that lives on one dedicated thread.

    Every call runs there, in submission order, in one hop, and every call
    that was submitted runs. A cancelled caller waits for its call to end
    before the cancellation goes on: a function that opens a transaction
    also closes it, so the connection is idle whenever no call is running.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="coral-sqlite", daemon=True)
        self._raw: sqlite3.Connection | None = None

    async def open(self, path: str, pragmas: Sequence[str]) -> None:
        def connect() -> sqlite3.Connection:
            raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            raw.row_factory = sqlite3.Row
            for pragma in pragmas:
                raw.execute(pragma)
            return raw

        self._thread.start()
        self._raw = await self._submit(connect)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raw = self._raw
        if raw is None:
            raise RuntimeError("database is not open")
        return await self._submit(lambda: fn(raw))

    async def close(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            await self._submit(raw.close)
        self._jobs.put(None)

    async def _submit(self, fn: Callable[[], T]) -> T:
        job = _Job(fn, asyncio.get_running_loop())
        self._jobs.put(job)
        try:
            result: T = await job.future
        except asyncio.CancelledError:
            if not job.ended:  # let it end, so the connection is idle again
                job.end_waiter = job.loop.create_future()
                await _run_to_end(job.end_waiter)
            raise
        return result

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                value, ok = job.fn(), True
            except BaseException as exc:  # delivered to the caller on the event loop
                value, ok = exc, False
            try:
                job.loop.call_soon_threadsafe(_job_ended, job, ok, value)
            except RuntimeError:  # the event loop is closed: nobody is waiting
                pass
            del job, value  # drop a finished call's cursor before waiting for the next


async def _run_to_end(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, then raise CancelledError if cancelled meanwhile."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class SqliteDatabase:
    """One SQLite file: a write lock, group commit and per-component migrations.

    Two connections share the file (WAL): an aiosqlite connection for
    ``transaction()``, migrations and ``fetchall``/``fetchone``, and a plain
    sqlite3 connection on a dedicated thread for ``write()`` (group commit)
    and ``run()``. Writers on either are serialized by one lock (SQLite has one
    writer anyway), and a failed or cancelled write never leaves half its rows
    behind nor a connection inside a transaction.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self._synchronous = synchronous
        self._conn: aiosqlite.Connection | None = None
        self._thread: _ConnectionThread | None = None
        self._write_lock = asyncio.Lock()
        self._group = self._new_committer()

    def _new_committer(self) -> GroupCommitter[WriteFn, Any]:
        return GroupCommitter(
            self._commit_group, max_group=MAX_GROUP, error=_commit_error, name="sqlite-group-commit"
        )

    @property
    def conn(self) -> aiosqlite.Connection:
        """The aiosqlite connection (reads, and writes inside ``transaction()``)."""
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @property
    def group_commit_stats(self) -> GroupCommitStats:
        """How many ``write()`` calls shared how many commits (for metrics)."""
        return self._group.stats

    async def open(self) -> None:
        """Open the file (creating it), enable WAL and foreign keys.

        Raises:
            ValueError: the path is ``:memory:`` (two connections must share the data).
            sqlite3.Error: the file cannot be opened.
        """
        if self.path == ":memory:":
            raise ValueError("SqliteDatabase needs a database file, not :memory:")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        pragmas = [
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={self._synchronous}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ]
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn.row_factory = aiosqlite.Row
        for pragma in pragmas:
            await self._conn.execute(pragma)
        await self._conn.executescript(_BOOTSTRAP)
        self._thread = _ConnectionThread()
        await self._thread.open(self.path, pragmas)
        self._group = self._new_committer()

    async def close(self) -> None:
        """Commit queued writes, checkpoint the WAL and close; safe to call twice.

        Raises:
            Nothing for a skipped checkpoint (the next open replays the WAL).

        Cancellation: the write lock is released and the connections may stay
        open; calling ``close`` again finishes the job.
        """
        await self._group.close()
        async with self._write_lock:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None
            if self._thread is not None:
                try:
                    await self._thread.call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
                except sqlite3.OperationalError as exc:
                    # A statement still open elsewhere blocks the checkpoint; the WAL
                    # is complete and is checkpointed at the next open, so close anyway.
                    log.info("WAL checkpoint skipped at close: %s", exc)
                await self._thread.close()
                self._thread = None

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the component's pending migrations in order; return its version.

        Raises:
            sqlite3.Error: a migration failed; it was rolled back, earlier ones stay.

        Cancellation: the migration in progress is rolled back before the
        cancellation goes on; earlier ones stay applied.
        """
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
                try:
                    await self.conn.execute("BEGIN IMMEDIATE")
                    for statement in _split_sql(migration.sql):
                        await self.conn.execute(statement)
                    await self.conn.execute(
                        "INSERT INTO schema_migrations(component, version) VALUES (?, ?)",
                        (component, migration.version),
                    )
                    await self.conn.execute("COMMIT")
                except BaseException:
                    await self._rollback()
                    raise
                current = migration.version
            return current

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Serialize a write transaction; commit on success, roll back on any error.

        Raises:
            StorageUnavailable: the disk is full or read-only, or the lock timed out.
            Exception: whatever the body raised, after the rollback.

        Cancellation: a transaction whose ``BEGIN`` or body is cancelled is rolled
        back, and the rollback finishes before the cancellation goes on, so the
        connection is never left inside a transaction.
        """
        async with self._write_lock:
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
            except BaseException as exc:
                # Even a cancelled BEGIN still runs on the database thread; roll back
                # whatever it opened before giving up the write lock.
                await self._rollback()
                if isinstance(exc, sqlite3.OperationalError):
                    raise storage_error(exc) from exc
                raise
            try:
                yield self.conn
            except BaseException as exc:
                await self._rollback()
                if isinstance(exc, sqlite3.OperationalError):
                    raise storage_error(exc) from exc
                raise
            try:
                await self.conn.execute("COMMIT")
            except BaseException as exc:
                await self._rollback()
                if isinstance(exc, sqlite3.OperationalError):
                    raise storage_error(exc) from exc
                raise

    async def _rollback(self) -> None:
        # aiosqlite runs calls in order, so this ROLLBACK follows the BEGIN or body
        # statement that may still be queued; it finishes even if we are cancelled
        # again meanwhile (the caller is re-raising an error or cancellation anyway).
        conn = self.conn

        async def rollback() -> None:
            await conn.execute("ROLLBACK")

        task = asyncio.ensure_future(rollback())
        try:
            await _run_to_end(task)
        finally:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None and not _no_transaction(error):
                log.warning("rollback failed: %s", error)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a synchronous read function on the write connection's thread in one hop.

        It sees what is committed (and nothing of a ``transaction()`` still open,
        which runs on the other connection).

        Raises:
            StorageUnavailable: SQLite cannot read now (I/O error, lock timeout).
            Exception: whatever ``fn`` raised.

        Cancellation: once ``fn`` has started it runs to the end first.
        """
        try:
            return await self._writer.call(fn)
        except sqlite3.OperationalError as exc:
            raise storage_error(exc) from exc

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in its own write transaction on the database thread, in one hop.

        ``BEGIN IMMEDIATE``, ``fn``, ``COMMIT`` all run in one call on the
        thread, serialized with every other writer; if ``fn`` raises, the
        transaction is rolled back and nothing of it is stored. For a caller
        that does its own grouping (the ledger's group commit) and wants the
        whole group to cost one hand-off.

        Raises:
            StorageUnavailable: SQLite cannot write now (full or read-only disk,
                I/O error, lock timeout).
            Exception: whatever ``fn`` raised, after the rollback.

        Cancellation: once started, the transaction commits or rolls back on the
        thread before the cancellation goes on (the caller does not learn which).
        """
        async with self._write_lock:
            try:
                return await self._writer.call(lambda raw: _in_transaction(raw, fn))
            except sqlite3.OperationalError as exc:
                raise storage_error(exc) from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a write transaction, with group commit.

        Writers that arrive while a transaction is in flight are folded into
        the next one: each runs under its own SAVEPOINT, so one failing writer
        is rolled back alone and gets its exception, while the others commit
        together in one hop to the database thread. Returns ``fn``'s result
        once its transaction has committed.

        Raises:
            StorageUnavailable: the database is closed, cannot write now (full or
                read-only disk, lock timeout), or the commit was interrupted.
            Exception: whatever ``fn`` raised (only ``fn``'s own rows are undone).

        Cancellation: a write still queued is withdrawn; one whose group has
        started commits or rolls back whole with it.
        """
        result: T = await self._group.submit(fn)
        return result

    @property
    def _writer(self) -> _ConnectionThread:
        if self._thread is None:
            raise RuntimeError("database is not open")
        return self._thread

    async def _commit_group(self, group: list[WriteFn]) -> list[Any]:
        async with self._write_lock:
            return await self._writer.call(lambda raw: _run_group(raw, group))

    async def fetchall(self, sql: str, params: Sequence[object] = ()) -> list[aiosqlite.Row]:
        """All rows of one query, in a single hop to the database thread.

        Raises:
            sqlite3.Error: the query failed.

        Cancellation: the query still runs to its end on the database thread.
        """
        return list(await self.conn.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[object] = ()) -> aiosqlite.Row | None:
        """The first row of one query, in a single hop to the database thread.

        Raises:
            sqlite3.Error: the query failed.

        Cancellation: the query still runs to its end on the database thread.
        """
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)


def _commit_error(exc: Exception) -> Exception:
    mapped = storage_error(exc)
    return mapped if isinstance(mapped, Exception) else exc


def _no_transaction(error: BaseException) -> bool:
    # SQLite already rolled back (a failed COMMIT), or the BEGIN never ran.
    return isinstance(error, sqlite3.OperationalError) and "no transaction" in str(error)


def _in_transaction(raw: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # Runs on the database thread: one transaction around one function.
    raw.execute("BEGIN IMMEDIATE")
    try:
        value = fn(raw)
        raw.execute("COMMIT")
    except BaseException:
        if raw.in_transaction:  # a failed COMMIT may already have rolled back
            raw.execute("ROLLBACK")
        raise
    return value


def _run_group(raw: sqlite3.Connection, batch: list[WriteFn]) -> list[Any]:
    # Runs on the database thread: one transaction, a savepoint per writer.
    outcomes: list[Any] = []
    raw.execute("BEGIN IMMEDIATE")
    try:
        for fn in batch:
            raw.execute("SAVEPOINT w")
            try:
                value = fn(raw)
            except Exception as exc:
                raw.execute("ROLLBACK TO w")
                raw.execute("RELEASE w")
                outcomes.append(Failed(_commit_error(exc)))
            else:
                raw.execute("RELEASE w")
                outcomes.append(value)
        raw.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (a failed COMMIT on a full disk);
        # a second ROLLBACK would raise and hide the real error.
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        raise
    return outcomes


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
