"""A2A tasks, context threads and push configs on PostgreSQL, shared by every replica.

Implements ``coral.api.a2a.tasks.A2ATaskRecords`` on the tables of
``coral.store.a2a_sqlite`` (every query scoped by owner, so a task is seen
only through the agent and caller it belongs to), plus one column: the
*runner*, a random token of the replica whose executor last wrote the task.

A task is followed by the executor of the replica that took the A2A call; if
that replica dies, nothing follows it any more. Each store holds a
session-level advisory lock on its runner token on one connection for as
long as it is open; PostgreSQL drops the lock when that process or
connection dies. ``unfinished`` returns only running tasks whose runner's
lock is free (its replica is gone), so a replica starting beside a live one
never fails that one's running tasks. A store whose lock connection broke
(the database restarted) takes the lock again before its next task write
(the connection is checked at most every ``runner_check_s`` seconds).

Every task write is announced on the ``a2a_tasks`` channel
(``coral.store.a2a_watch_postgres``): a client subscribed to a task through
one replica follows the writes of the replica that runs it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from coral.api.a2a.tasks import (
    RUNNING_STATES,
    TERMINAL_STATES,
    ContextBinding,
    TaskQuery,
    TaskRow,
)
from coral.store.a2a_watch_postgres import CHANNEL as WATCH_CHANNEL
from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "a2a"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE a2a_tasks (
            scope TEXT NOT NULL,
            task_id TEXT NOT NULL,
            context_id TEXT NOT NULL,
            state INTEGER NOT NULL,
            updated_ns BIGINT NOT NULL,
            body BYTEA NOT NULL,
            runner BIGINT NOT NULL,
            PRIMARY KEY (scope, task_id)
        );
        CREATE INDEX a2a_tasks_listing ON a2a_tasks (scope, updated_ns, task_id COLLATE "C");
        CREATE INDEX a2a_tasks_age ON a2a_tasks (updated_ns);
        CREATE INDEX a2a_tasks_running ON a2a_tasks (state, runner);
        CREATE TABLE a2a_contexts (
            scope TEXT NOT NULL,
            context_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            PRIMARY KEY (scope, context_id)
        );
        CREATE TABLE a2a_push_configs (
            scope TEXT NOT NULL,
            task_id TEXT NOT NULL,
            config_id TEXT NOT NULL,
            body BYTEA NOT NULL,
            PRIMARY KEY (scope, task_id, config_id)
        );
        CREATE INDEX a2a_push_by_task ON a2a_push_configs (task_id);
        """,
    )
]

_TERMINAL = [int(s) for s in sorted(TERMINAL_STATES)]
_RUNNING = [int(s) for s in sorted(RUNNING_STATES)]


class PostgresA2ATaskRecords:
    """The A2A task port on a shared PostgreSQL pool (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, *, runner_check_s: float = 5.0) -> None:
        self._pool = pool
        #: This store's runner token (a bigint advisory-lock key), random per process.
        self.runner = secrets.randbits(62) + 1
        self.runner_check_s = runner_check_s
        self._runner_conn: Any = None  # the pool connection that holds the runner lock
        self._runner_lock = asyncio.Lock()
        self._runner_checked = 0.0  # time.monotonic() of the last look at that connection

    async def open(self) -> None:
        """Create or upgrade the tables, then take this runner's lock.

        Raises:
            asyncpg.PostgresError, OSError: the database refused or is unreachable.
        """
        await migrate(self._pool, COMPONENT, MIGRATIONS)
        await self.hold_runner_lock()

    async def hold_runner_lock(self) -> None:
        """Take this runner's lock, again if its connection broke (no-op while held).

        Raises:
            asyncpg.PostgresError, OSError: the database refused or is unreachable.
        """
        async with self._runner_lock:
            old = self._runner_conn
            if old is not None and await self._still_holding(old):
                return
            self._runner_conn = None
            if old is not None:
                await self._release(old)
            conn = await self._pool.acquire()
            try:
                await conn.execute("SELECT pg_advisory_lock($1::bigint)", self.runner)
            except BaseException:
                await self._release(conn)
                raise
            self._runner_conn = conn
            self._runner_checked = time.monotonic()

    async def _still_holding(self, conn: Any) -> bool:
        """False when the lock's connection is gone (looked at every ``runner_check_s``)."""
        try:  # a lost connection may already be detached from its proxy: InterfaceError
            if conn.is_closed():
                return False
            if time.monotonic() - self._runner_checked < self.runner_check_s:
                return True
            await conn.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        self._runner_checked = time.monotonic()
        return True

    async def _release(self, conn: Any) -> None:
        try:
            await self._pool.release(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # a broken connection: the pool replaces it

    async def close(self) -> None:
        """Give the runner lock back (tasks still running here then count as interrupted)."""
        async with self._runner_lock:
            conn, self._runner_conn = self._runner_conn, None
            if conn is None:
                return
            try:
                await conn.execute("SELECT pg_advisory_unlock($1::bigint)", self.runner)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pass  # a dead connection already dropped the lock
            finally:
                await self._release(conn)

    async def save_task(self, row: TaskRow) -> None:
        """Insert or replace a task (this replica becomes its runner).

        Watchers on every replica hear of it once it commits (``a2a_tasks`` NOTIFY).
        """
        await self.hold_runner_lock()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO a2a_tasks (scope, task_id, context_id, state, updated_ns, body,"
                " runner) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, task_id)"
                " DO UPDATE SET context_id = excluded.context_id, state = excluded.state,"
                " updated_ns = excluded.updated_ns, body = excluded.body,"
                " runner = excluded.runner",
                row.scope,
                row.task_id,
                row.context_id,
                row.state,
                row.updated_ns,
                row.body,
                self.runner,
            )
            await conn.execute("SELECT pg_notify($1, $2)", WATCH_CHANNEL, row.task_id)

    async def save_batch(
        self, tasks: Sequence[TaskRow], contexts: Sequence[ContextBinding]
    ) -> None:
        """Insert or replace tasks, then context bindings, in order (each as ``save_task`` and
        ``bind_thread`` would: replicas watch every task write)."""
        for row in tasks:
            await self.save_task(row)
        for binding in contexts:
            await self.bind_thread(binding.scope, binding.context_id, binding.thread_id)

    async def get_task(self, scope: str, task_id: str) -> bytes | None:
        """One task of a scope, serialized."""
        async with self._pool.acquire() as conn:
            body = await conn.fetchval(
                "SELECT body FROM a2a_tasks WHERE scope = $1 AND task_id = $2", scope, task_id
            )
        return bytes(body) if body is not None else None

    async def list_tasks(self, scope: str, query: TaskQuery) -> tuple[list[bytes], int]:
        """A page of tasks, newest update first (ties by id, bytewise), and the filtered total."""
        params: list[object] = [scope]
        where = ["scope = $1"]
        if query.context_id:
            params.append(query.context_id)
            where.append(f"context_id = ${len(params)}")
        if query.state:
            params.append(query.state)
            where.append(f"state = ${len(params)}")
        if query.updated_after_ns is not None:
            params.append(query.updated_after_ns)
            where.append(f"updated_ns >= ${len(params)}")
        clause = " AND ".join(where)
        page_params = list(params)
        page_clause = clause
        if query.after is not None:
            page_params += [query.after[0], query.after[1]]
            n = len(page_params)
            page_clause += (
                f" AND (updated_ns < ${n - 1}"
                f' OR (updated_ns = ${n - 1} AND task_id COLLATE "C" < ${n}))'
            )
        page_params.append(query.limit)
        async with self._pool.acquire() as conn:
            total = await conn.fetchval(f"SELECT COUNT(*) FROM a2a_tasks WHERE {clause}", *params)
            rows = await conn.fetch(
                f"SELECT body FROM a2a_tasks WHERE {page_clause}"
                f' ORDER BY updated_ns DESC, task_id COLLATE "C" DESC LIMIT ${len(page_params)}',
                *page_params,
            )
        return [bytes(r["body"]) for r in rows], int(total)

    async def delete_task(self, scope: str, task_id: str) -> None:
        """Forget a task and its push configs."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM a2a_tasks WHERE scope = $1 AND task_id = $2", scope, task_id
            )
            await conn.execute(
                "DELETE FROM a2a_push_configs WHERE scope = $1 AND task_id = $2", scope, task_id
            )

    async def evict(self, finished_before_ns: int, keep: int) -> int:
        """Drop finished tasks older than the cut-off, then the oldest beyond ``keep``."""
        async with self._pool.acquire() as conn, conn.transaction():
            gone = _count(
                await conn.execute(
                    "DELETE FROM a2a_tasks WHERE state = ANY($1::int[]) AND updated_ns < $2",
                    _TERMINAL,
                    finished_before_ns,
                )
            )
            gone += _count(
                await conn.execute(
                    "DELETE FROM a2a_tasks WHERE (scope, task_id) IN (SELECT scope, task_id"
                    " FROM a2a_tasks ORDER BY updated_ns DESC OFFSET $1)",
                    keep,
                )
            )
            await conn.execute(
                "DELETE FROM a2a_push_configs p WHERE NOT EXISTS (SELECT 1 FROM a2a_tasks t"
                " WHERE t.scope = p.scope AND t.task_id = p.task_id)"
            )
            await conn.execute(
                "DELETE FROM a2a_contexts c WHERE NOT EXISTS (SELECT 1 FROM a2a_tasks t"
                " WHERE t.scope = c.scope AND t.context_id = c.context_id)"
            )
        return gone

    async def unfinished(self) -> list[TaskRow]:
        """Tasks still SUBMITTED or WORKING whose runner's replica is gone."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT scope, task_id, context_id, state, updated_ns, body, runner"
                " FROM a2a_tasks WHERE state = ANY($1::int[]) AND runner <> $2",
                _RUNNING,
                self.runner,
            )
            gone: set[int] = set()
            for runner in {int(r["runner"]) for r in rows}:
                # Free lock = nobody holds it = that runner's process or connection ended.
                if await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", runner):
                    await conn.execute("SELECT pg_advisory_unlock($1::bigint)", runner)
                    gone.add(runner)
        return [
            TaskRow(
                scope=r["scope"],
                task_id=r["task_id"],
                context_id=r["context_id"],
                state=int(r["state"]),
                updated_ns=int(r["updated_ns"]),
                body=bytes(r["body"]),
            )
            for r in rows
            if int(r["runner"]) in gone
        ]

    async def bind_thread(self, scope: str, context_id: str, thread_id: str) -> None:
        """Remember the Coral thread of a context."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO a2a_contexts (scope, context_id, thread_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (scope, context_id) DO UPDATE SET thread_id = excluded.thread_id",
                scope,
                context_id,
                thread_id,
            )

    async def thread_of(self, scope: str, context_id: str) -> str | None:
        """The Coral thread of a context."""
        async with self._pool.acquire() as conn:
            thread = await conn.fetchval(
                "SELECT thread_id FROM a2a_contexts WHERE scope = $1 AND context_id = $2",
                scope,
                context_id,
            )
        return str(thread) if thread is not None else None

    async def save_push(self, scope: str, task_id: str, config_id: str, body: bytes) -> None:
        """Insert or replace a push config."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO a2a_push_configs (scope, task_id, config_id, body)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (scope, task_id, config_id)"
                " DO UPDATE SET body = excluded.body",
                scope,
                task_id,
                config_id,
                body,
            )

    async def push_configs(self, scope: str | None, task_id: str) -> list[bytes]:
        """A task's push configs (every owner's when ``scope`` is None)."""
        async with self._pool.acquire() as conn:
            if scope is None:
                rows = await conn.fetch(
                    "SELECT body FROM a2a_push_configs WHERE task_id = $1"
                    ' ORDER BY config_id COLLATE "C"',
                    task_id,
                )
            else:
                rows = await conn.fetch(
                    "SELECT body FROM a2a_push_configs WHERE scope = $1 AND task_id = $2"
                    ' ORDER BY config_id COLLATE "C"',
                    scope,
                    task_id,
                )
        return [bytes(r["body"]) for r in rows]

    async def delete_push(self, scope: str, task_id: str, config_id: str | None) -> None:
        """Delete one push config, or all of a task's."""
        async with self._pool.acquire() as conn:
            if config_id is None:
                await conn.execute(
                    "DELETE FROM a2a_push_configs WHERE scope = $1 AND task_id = $2",
                    scope,
                    task_id,
                )
            else:
                await conn.execute(
                    "DELETE FROM a2a_push_configs WHERE scope = $1 AND task_id = $2"
                    " AND config_id = $3",
                    scope,
                    task_id,
                    config_id,
                )


def _count(status: str) -> int:
    """The row count of an asyncpg command status (``DELETE 3`` -> 3)."""
    return int(status.split()[-1])
