"""Durable MCP wait cursors on PostgreSQL, shared by every replica of the node.

The same table as ``coral.store.wait_cursors_sqlite``: where each agent's
``coral_wait_*`` left off, per wait kind. On a shared database a wait that
lands on another replica starts where the last one, on any replica, ended:
no message is returned twice or skipped.
"""

from __future__ import annotations

import asyncpg

from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "mcp_wait_cursors"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE mcp_wait_cursors (
            agent TEXT NOT NULL,
            wait_key TEXT NOT NULL,
            cursor BIGINT NOT NULL,
            PRIMARY KEY (agent, wait_key)
        );
        """,
    )
]


class PostgresWaitCursors:
    """Agent + wait key -> inbox cursor, on a shared PostgreSQL pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Create or upgrade the table (once, under an advisory lock)."""
        await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def get(self, agent: str, key: str) -> int:
        """The stored cursor, 0 when none."""
        async with self._pool.acquire() as conn:
            cursor = await conn.fetchval(
                "SELECT cursor FROM mcp_wait_cursors WHERE agent = $1 AND wait_key = $2",
                agent,
                key,
            )
        return int(cursor) if cursor is not None else 0

    async def put(self, agent: str, key: str, cursor: int) -> None:
        """Store the cursor (it only moves forward, whichever replica writes last)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO mcp_wait_cursors (agent, wait_key, cursor) VALUES ($1, $2, $3)"
                " ON CONFLICT (agent, wait_key) DO UPDATE"
                " SET cursor = GREATEST(mcp_wait_cursors.cursor, excluded.cursor)",
                agent,
                key,
                cursor,
            )
