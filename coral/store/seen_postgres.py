"""Accepted message ids on PostgreSQL (``SeenIds``), shared by every node process.

The primary key refuses an id twice, so a replay is caught even when the
first copy went through another process on the same database.
"""

from __future__ import annotations

import asyncpg

from coral.protocol.errors import Replayed
from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "seen"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE seen_messages (id TEXT PRIMARY KEY, forget_at BIGINT NOT NULL);
        CREATE INDEX seen_messages_forget ON seen_messages (forget_at);
        """,
    )
]


class PostgresSeenStore:
    """Message ids accepted within the replay window (``SeenIds``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Create or upgrade the table (once, under an advisory lock)."""
        await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def remember(self, message_id: str, forget_at: int) -> None:
        """Record the id until ``forget_at``.

        Raises:
            Replayed: the id is already recorded.
        """
        async with self._pool.acquire() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO seen_messages (id, forget_at) VALUES ($1, $2)"
                " ON CONFLICT (id) DO NOTHING RETURNING 1",
                message_id,
                forget_at,
            )
        if inserted is None:
            raise Replayed(f"message id {message_id} was already accepted")

    async def prune(self, now_ms: int) -> int:
        """Forget ids whose window has passed; returns how many."""
        async with self._pool.acquire() as conn:
            status = await conn.execute("DELETE FROM seen_messages WHERE forget_at <= $1", now_ms)
        return int(status.split()[-1])
