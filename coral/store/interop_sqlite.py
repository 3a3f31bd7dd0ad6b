"""SQLite storage of node-held agents (``coral.api.mcp.held_agents.HeldAgentRecords``).

One row per held agent; the connection secret is stored only as its SHA-256.
"""

from __future__ import annotations

import sqlite3

from coral.api.mcp.held_agents import HeldAgentRow
from coral.protocol.errors import Conflict
from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE interop_agents (
            did TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            secret_sha256 TEXT UNIQUE,
            card_url TEXT,
            created_at INTEGER NOT NULL
        );
        """,
    )
]


class SqliteHeldAgentRecords:
    """``HeldAgentRecords`` in the node's SQLite database (component ``interop``)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        """Create the table when missing."""
        await self.db.migrate("interop", MIGRATIONS)

    async def all(self) -> list[HeldAgentRow]:
        """Every held agent."""
        rows = await self.db.fetchall("SELECT did, name, kind, card_url FROM interop_agents")
        return [HeldAgentRow(r["did"], r["name"], r["kind"], r["card_url"]) for r in rows]

    async def add(self, row: HeldAgentRow, secret_sha256: str | None, created_at: int) -> None:
        """Record a held agent; Conflict when the did, name or secret hash is taken."""
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO interop_agents(did, name, kind, secret_sha256, card_url,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.did, row.name, row.kind, secret_sha256, row.card_url, created_at),
                )
        except sqlite3.IntegrityError:
            raise Conflict(
                f"held agent {row.name!r} is already recorded", reason="held_agent_exists"
            ) from None

    async def remove(self, did: str) -> None:
        """Forget a held agent (no-op when unknown)."""
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM interop_agents WHERE did = ?", (did,))

    async def did_for_secret(self, secret_sha256: str) -> str | None:
        """The did whose connection secret hashes to ``secret_sha256``, or None."""
        row = await self.db.fetchone(
            "SELECT did FROM interop_agents WHERE secret_sha256 = ?", (secret_sha256,)
        )
        return str(row["did"]) if row is not None else None
