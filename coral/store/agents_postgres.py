"""Agent records (the directory) and name bindings on PostgreSQL (``AgentStore``).

The same tables as ``coral.store.agents_sqlite``. Every check-then-write is
one statement or one transaction that the database serializes, so node
processes sharing the database agree on versions and on who holds a name.
"""

from __future__ import annotations

import json

import asyncpg

from coral.protocol.agent import AgentRecord
from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "agents"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE agents (
            did TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            home_node TEXT NOT NULL,
            version BIGINT NOT NULL,
            deleted BOOLEAN NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX agents_name ON agents (name);
        CREATE TABLE agent_capabilities (
            did TEXT NOT NULL REFERENCES agents (did) ON DELETE CASCADE,
            capability TEXT NOT NULL,
            PRIMARY KEY (did, capability)
        );
        CREATE INDEX agent_capabilities_cap ON agent_capabilities (capability);
        CREATE TABLE agent_names (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            did TEXT NOT NULL,
            bound_at BIGINT NOT NULL,
            PRIMARY KEY (scope, name)
        );
        CREATE INDEX agent_names_did ON agent_names (did);
        """,
    ),
]


class PostgresAgentStore:
    """``AgentStore`` on a shared PostgreSQL pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Create or upgrade the tables (once, under an advisory lock)."""
        await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def get(self, did: str) -> AgentRecord | None:
        """The stored record for ``did`` (tombstones included), or None."""
        async with self._pool.acquire() as conn:
            text = await conn.fetchval("SELECT record FROM agents WHERE did = $1", did)
        return AgentRecord.model_validate_json(text) if text is not None else None

    async def put(self, record: AgentRecord) -> bool:
        """Store the record if its version is newer than the stored one; True when stored."""
        async with self._pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(
                "INSERT INTO agents (did, name, home_node, version, deleted, record)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (did) DO UPDATE SET"
                " name = excluded.name, home_node = excluded.home_node,"
                " version = excluded.version, deleted = excluded.deleted,"
                " record = excluded.record WHERE agents.version < excluded.version RETURNING 1",
                record.agent,
                record.manifest.name,
                record.home_node,
                record.version,
                record.deleted,
                json.dumps(record.model_dump(mode="json")),
            )
            if stored is None:
                return False
            await conn.execute("DELETE FROM agent_capabilities WHERE did = $1", record.agent)
            await conn.executemany(
                "INSERT INTO agent_capabilities (did, capability) VALUES ($1, $2)",
                [(record.agent, c) for c in sorted(set(record.manifest.capabilities))],
            )
        return True

    async def bind_name(self, scope: str, name: str, did: str, now_ms: int) -> str:
        """Bind ``name`` to ``did`` unless already bound; returns the holder's did."""
        async with self._pool.acquire() as conn:
            bound = await conn.fetchval(
                "INSERT INTO agent_names (scope, name, did, bound_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (scope, name) DO NOTHING RETURNING did",
                scope,
                name,
                did,
                now_ms,
            )
            if bound is not None:
                return str(bound)
            # A separate statement: its snapshot sees the row that won the conflict.
            holder = await conn.fetchval(
                "SELECT did FROM agent_names WHERE scope = $1 AND name = $2", scope, name
            )
        return str(holder)

    async def name_holder(self, scope: str, name: str) -> str | None:
        """The did ``name`` is bound to in ``scope``, or None."""
        async with self._pool.acquire() as conn:
            holder = await conn.fetchval(
                "SELECT did FROM agent_names WHERE scope = $1 AND name = $2", scope, name
            )
        return str(holder) if holder is not None else None

    async def rebind_name(self, scope: str, name: str, old_did: str, new_did: str) -> bool:
        """Move a binding from ``old_did`` to ``new_did`` (idempotent); True when it moved."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "UPDATE agent_names SET did = $1 WHERE scope = $2 AND name = $3"
                " AND did IN ($4, $1)",
                new_did,
                scope,
                name,
                old_did,
            )
        return bool(status == "UPDATE 1")

    async def release_name(self, scope: str, name: str, did: str) -> None:
        """Drop ``did``'s binding of ``name`` (no-op when another did holds it)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM agent_names WHERE scope = $1 AND name = $2 AND did = $3",
                scope,
                name,
                did,
            )

    async def search(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        home_node: str | None = None,
        include_deleted: bool = False,
    ) -> list[AgentRecord]:
        """Records matching every given filter, by name then did (bytewise, as SQLite)."""
        sql = "SELECT record FROM agents a WHERE TRUE"
        params: list[object] = []
        if name is not None:
            params.append(name)
            sql += f" AND a.name = ${len(params)}"
        if home_node is not None:
            params.append(home_node)
            sql += f" AND a.home_node = ${len(params)}"
        if not include_deleted:
            sql += " AND NOT a.deleted"
        if capability is not None:
            params.append(capability)
            sql += (
                " AND EXISTS (SELECT 1 FROM agent_capabilities c"
                f" WHERE c.did = a.did AND c.capability = ${len(params)})"
            )
        sql += ' ORDER BY a.name COLLATE "C", a.did COLLATE "C"'
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(sql, *params)
        return [AgentRecord.model_validate_json(row["record"]) for row in rows]
