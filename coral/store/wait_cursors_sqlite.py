"""Durable MCP wait cursors: where each agent's ``coral_wait_*`` left off, per wait kind.

A restart must not make an agent's next wait return messages it already got
(or lose ones it did not): the cursor is the agent's inbox position, stored
after every wait that returns a message.
"""

from __future__ import annotations

from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE mcp_wait_cursors (
            agent TEXT NOT NULL,
            wait_key TEXT NOT NULL,
            cursor INTEGER NOT NULL,
            PRIMARY KEY (agent, wait_key)
        );
        """,
    )
]


class SqliteWaitCursors:
    """Agent + wait key -> inbox cursor, in the node's SQLite database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        """Create the table when missing."""
        await self.db.migrate("mcp_wait_cursors", MIGRATIONS)

    async def get(self, agent: str, key: str) -> int:
        """The stored cursor, 0 when none."""
        row = await self.db.fetchone(
            "SELECT cursor FROM mcp_wait_cursors WHERE agent = ? AND wait_key = ?", (agent, key)
        )
        return int(row["cursor"]) if row is not None else 0

    async def put(self, agent: str, key: str, cursor: int) -> None:
        """Store the cursor (it only moves forward)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO mcp_wait_cursors(agent, wait_key, cursor) VALUES (?, ?, ?)"
                " ON CONFLICT(agent, wait_key) DO UPDATE SET cursor = max(cursor, excluded.cursor)",
                (agent, key, cursor),
            )
