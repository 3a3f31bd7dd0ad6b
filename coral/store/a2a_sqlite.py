"""A2A tasks, context threads and push configs in the node's SQLite database.

Implements ``coral.api.a2a.tasks.A2ATaskRecords``. Tasks are stored as
serialized protobuf with the columns ListTasks filters on; every query is
scoped (agent, plus caller when authenticated).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from coral.api.a2a.tasks import (
    RUNNING_STATES,
    TERMINAL_STATES,
    ContextBinding,
    TaskQuery,
    TaskRow,
)
from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE a2a_tasks (
            scope TEXT NOT NULL,
            task_id TEXT NOT NULL,
            context_id TEXT NOT NULL,
            state INTEGER NOT NULL,
            updated_ns INTEGER NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (scope, task_id)
        );
        CREATE INDEX a2a_tasks_listing ON a2a_tasks(scope, updated_ns, task_id);
        CREATE INDEX a2a_tasks_age ON a2a_tasks(updated_ns);
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
            body BLOB NOT NULL,
            PRIMARY KEY (scope, task_id, config_id)
        );
        CREATE INDEX a2a_push_by_task ON a2a_push_configs(task_id)
        """,
    )
]

_TERMINAL = ",".join(str(int(s)) for s in sorted(TERMINAL_STATES))
_RUNNING = ",".join(str(int(s)) for s in sorted(RUNNING_STATES))


class SqliteA2ATaskRecords:
    """The A2A task port on SQLite.

    This process is the only writer of these tables, so it remembers which
    tasks have push configs (a superset: deletes do not shrink it) and answers
    "none" for the others without a query; most tasks have none, and the
    push sender asks once per task event.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db
        self._push_tasks: set[str] = set()

    async def open(self) -> None:
        """Create or migrate the tables."""
        await self.db.migrate("a2a", MIGRATIONS)
        rows = await self.db.fetchall("SELECT DISTINCT task_id FROM a2a_push_configs", ())
        self._push_tasks = {str(r[0]) for r in rows}

    async def save_task(self, row: TaskRow) -> None:
        """Insert or replace a task."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO a2a_tasks VALUES (?, ?, ?, ?, ?, ?)",
                (row.scope, row.task_id, row.context_id, row.state, row.updated_ns, row.body),
            )

        await self.db.write(write)

    async def save_batch(
        self, tasks: Sequence[TaskRow], contexts: Sequence[ContextBinding]
    ) -> None:
        """Insert or replace tasks and context bindings in one transaction, in order."""

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR REPLACE INTO a2a_tasks VALUES (?, ?, ?, ?, ?, ?)",
                [(r.scope, r.task_id, r.context_id, r.state, r.updated_ns, r.body) for r in tasks],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO a2a_contexts VALUES (?, ?, ?)",
                [(b.scope, b.context_id, b.thread_id) for b in contexts],
            )

        await self.db.write(write)

    async def get_task(self, scope: str, task_id: str) -> bytes | None:
        """One task of a scope, serialized."""
        found = await self.db.fetchone(
            "SELECT body FROM a2a_tasks WHERE scope = ? AND task_id = ?", (scope, task_id)
        )
        return bytes(found[0]) if found else None

    async def list_tasks(self, scope: str, query: TaskQuery) -> tuple[list[bytes], int]:
        """A page of tasks, newest update first, and the filtered total."""
        where: list[str] = ["scope = ?"]
        params: list[object] = [scope]
        if query.context_id:
            where.append("context_id = ?")
            params.append(query.context_id)
        if query.state:
            where.append("state = ?")
            params.append(query.state)
        if query.updated_after_ns is not None:
            where.append("updated_ns >= ?")
            params.append(query.updated_after_ns)
        clause = " AND ".join(where)
        total_row = await self.db.fetchone(f"SELECT COUNT(*) FROM a2a_tasks WHERE {clause}", params)
        page_where, page_params = clause, list(params)
        if query.after is not None:
            page_where += " AND (updated_ns < ? OR (updated_ns = ? AND task_id < ?))"
            page_params += [query.after[0], query.after[0], query.after[1]]
        rows = await self.db.fetchall(
            f"SELECT body FROM a2a_tasks WHERE {page_where} "
            "ORDER BY updated_ns DESC, task_id DESC LIMIT ?",
            [*page_params, query.limit],
        )
        return [bytes(r[0]) for r in rows], int(total_row[0]) if total_row else 0

    async def delete_task(self, scope: str, task_id: str) -> None:
        """Forget a task and its push configs."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM a2a_tasks WHERE scope = ? AND task_id = ?", (scope, task_id))
            conn.execute(
                "DELETE FROM a2a_push_configs WHERE scope = ? AND task_id = ?", (scope, task_id)
            )

        await self.db.write(write)

    async def evict(self, finished_before_ns: int, keep: int) -> int:
        """Drop finished tasks older than the cut-off, then the oldest beyond ``keep``."""

        def write(conn: sqlite3.Connection) -> int:
            gone = conn.execute(
                f"DELETE FROM a2a_tasks WHERE state IN ({_TERMINAL}) AND updated_ns < ?",
                (finished_before_ns,),
            ).rowcount
            gone += conn.execute(
                "DELETE FROM a2a_tasks WHERE rowid IN (SELECT rowid FROM a2a_tasks "
                "ORDER BY updated_ns DESC LIMIT -1 OFFSET ?)",
                (keep,),
            ).rowcount
            conn.execute(
                "DELETE FROM a2a_push_configs WHERE NOT EXISTS (SELECT 1 FROM a2a_tasks t "
                "WHERE t.scope = a2a_push_configs.scope AND t.task_id = a2a_push_configs.task_id)"
            )
            conn.execute(
                "DELETE FROM a2a_contexts WHERE NOT EXISTS (SELECT 1 FROM a2a_tasks t "
                "WHERE t.scope = a2a_contexts.scope AND t.context_id = a2a_contexts.context_id)"
            )
            return int(gone)

        return await self.db.write(write)

    async def unfinished(self) -> list[TaskRow]:
        """Tasks still SUBMITTED or WORKING."""
        rows = await self.db.fetchall(f"SELECT * FROM a2a_tasks WHERE state IN ({_RUNNING})", ())
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
        ]

    async def bind_thread(self, scope: str, context_id: str, thread_id: str) -> None:
        """Remember the Coral thread of a context."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO a2a_contexts VALUES (?, ?, ?)",
                (scope, context_id, thread_id),
            )

        await self.db.write(write)

    async def thread_of(self, scope: str, context_id: str) -> str | None:
        """The Coral thread of a context."""
        found = await self.db.fetchone(
            "SELECT thread_id FROM a2a_contexts WHERE scope = ? AND context_id = ?",
            (scope, context_id),
        )
        return str(found[0]) if found else None

    async def save_push(self, scope: str, task_id: str, config_id: str, body: bytes) -> None:
        """Insert or replace a push config."""
        self._push_tasks.add(task_id)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO a2a_push_configs VALUES (?, ?, ?, ?)",
                (scope, task_id, config_id, body),
            )

        await self.db.write(write)

    async def push_configs(self, scope: str | None, task_id: str) -> list[bytes]:
        """A task's push configs (every owner's when ``scope`` is None)."""
        if task_id not in self._push_tasks:
            return []
        if scope is None:
            rows = await self.db.fetchall(
                "SELECT body FROM a2a_push_configs WHERE task_id = ? ORDER BY config_id",
                (task_id,),
            )
        else:
            rows = await self.db.fetchall(
                "SELECT body FROM a2a_push_configs WHERE scope = ? AND task_id = ? "
                "ORDER BY config_id",
                (scope, task_id),
            )
        return [bytes(r[0]) for r in rows]

    async def delete_push(self, scope: str, task_id: str, config_id: str | None) -> None:
        """Delete one push config, or all of a task's."""

        def write(conn: sqlite3.Connection) -> None:
            if config_id is None:
                conn.execute(
                    "DELETE FROM a2a_push_configs WHERE scope = ? AND task_id = ?",
                    (scope, task_id),
                )
            else:
                conn.execute(
                    "DELETE FROM a2a_push_configs WHERE scope = ? AND task_id = ? "
                    "AND config_id = ?",
                    (scope, task_id, config_id),
                )

        await self.db.write(write)
