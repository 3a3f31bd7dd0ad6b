"""Accepted message ids, kept on disk for the replay window.

The in-memory replay guard forgets on restart; this table makes a replay
within the window fail after a restart too.
"""

from __future__ import annotations

import sqlite3

from coral.protocol.errors import Replayed
from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE seen_messages (id TEXT PRIMARY KEY, forget_at INTEGER NOT NULL);
        CREATE INDEX seen_messages_forget ON seen_messages(forget_at);
        """,
    )
]


class SqliteSeenStore:
    """Message ids accepted within the replay window."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.migrate("seen", MIGRATIONS)

    async def remember(self, message_id: str, forget_at: int) -> None:
        """Record the id; raise Replayed when it is already recorded.

        One group-committed write (shared with concurrent writers), not a
        transaction of its own.
        """

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "INSERT OR IGNORE INTO seen_messages(id, forget_at) VALUES (?, ?)",
                (message_id, forget_at),
            ).rowcount

        if not await self.db.write(write):
            raise Replayed(f"message id {message_id} was already accepted")

    async def prune(self, now_ms: int) -> int:
        """Forget ids whose window has passed; returns how many."""
        async with self.db.transaction() as conn:
            cur = await conn.execute("DELETE FROM seen_messages WHERE forget_at <= ?", (now_ms,))
            return cur.rowcount
