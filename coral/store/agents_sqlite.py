"""SQLite storage of agent records (the directory)."""

from __future__ import annotations

import json

from coral.protocol.agent import AgentRecord
from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE agents (
            did TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            home_node TEXT NOT NULL,
            version INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            record TEXT NOT NULL
        );
        CREATE INDEX agents_name ON agents(name);
        CREATE TABLE agent_capabilities (
            did TEXT NOT NULL REFERENCES agents(did) ON DELETE CASCADE,
            capability TEXT NOT NULL,
            PRIMARY KEY (did, capability)
        );
        CREATE INDEX agent_capabilities_cap ON agent_capabilities(capability);
        """,
    ),
    Migration(
        2,
        """
        CREATE TABLE agent_names (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            did TEXT NOT NULL,
            bound_at INTEGER NOT NULL,
            PRIMARY KEY (scope, name)
        );
        CREATE INDEX agent_names_did ON agent_names(did);
        """,
    ),
]


class SqliteAgentStore:
    """AgentStore over the node database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def open(self) -> None:
        await self.db.migrate("agents", MIGRATIONS)

    async def get(self, did: str) -> AgentRecord | None:
        row = await self.db.fetchone("SELECT record FROM agents WHERE did = ?", (did,))
        return AgentRecord.model_validate_json(row[0]) if row else None

    async def put(self, record: AgentRecord) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT version FROM agents WHERE did = ?", (record.agent,))
            row = await cur.fetchone()
            if row is not None and row[0] >= record.version:
                return False
            await conn.execute(
                "INSERT INTO agents(did, name, home_node, version, deleted, record) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(did) DO UPDATE SET name=excluded.name, "
                "home_node=excluded.home_node, version=excluded.version, "
                "deleted=excluded.deleted, record=excluded.record",
                (
                    record.agent,
                    record.manifest.name,
                    record.home_node,
                    record.version,
                    int(record.deleted),
                    json.dumps(record.model_dump(mode="json")),
                ),
            )
            await conn.execute("DELETE FROM agent_capabilities WHERE did = ?", (record.agent,))
            await conn.executemany(
                "INSERT INTO agent_capabilities(did, capability) VALUES (?, ?)",
                [(record.agent, c) for c in set(record.manifest.capabilities)],
            )
        return True

    async def bind_name(self, scope: str, name: str, did: str, now_ms: int) -> str:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO agent_names(scope, name, did, bound_at) VALUES (?, ?, ?, ?)",
                (scope, name, did, now_ms),
            )
            cur = await conn.execute(
                "SELECT did FROM agent_names WHERE scope = ? AND name = ?", (scope, name)
            )
            row = await cur.fetchone()
        assert row is not None
        return str(row[0])

    async def name_holder(self, scope: str, name: str) -> str | None:
        row = await self.db.fetchone(
            "SELECT did FROM agent_names WHERE scope = ? AND name = ?", (scope, name)
        )
        return str(row[0]) if row else None

    async def rebind_name(self, scope: str, name: str, old_did: str, new_did: str) -> bool:
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE agent_names SET did = ? WHERE scope = ? AND name = ? AND did IN (?, ?)",
                (new_did, scope, name, old_did, new_did),
            )
            return cur.rowcount == 1

    async def release_name(self, scope: str, name: str, did: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM agent_names WHERE scope = ? AND name = ? AND did = ?",
                (scope, name, did),
            )

    async def search(
        self,
        *,
        name: str | None = None,
        capability: str | None = None,
        home_node: str | None = None,
        include_deleted: bool = False,
    ) -> list[AgentRecord]:
        sql = "SELECT record FROM agents a WHERE 1=1"
        params: list[object] = []
        if name is not None:
            sql += " AND a.name = ?"
            params.append(name)
        if home_node is not None:
            sql += " AND a.home_node = ?"
            params.append(home_node)
        if not include_deleted:
            sql += " AND a.deleted = 0"
        if capability is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM agent_capabilities c"
                " WHERE c.did = a.did AND c.capability = ?)"
            )
            params.append(capability)
        sql += " ORDER BY a.name, a.did"
        rows = await self.db.fetchall(sql, params)
        return [AgentRecord.model_validate_json(r[0]) for r in rows]
