"""How many PostgreSQL connections one node process holds.

Every store of a node process shares one pool of ``database_pool_size``
connections; outside it the process keeps only its one LISTEN connection and its
background-lease connection (``docs/operations.md``, replicas). The test runs
a node with a small pool, drives every kind of traffic that touches the
database (registrations, threads, messages, long-polls, the dashboard, the A2A
front door) and counts the node's sessions in ``pg_stat_activity`` while
that traffic runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralClient
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

POOL_SIZE = 3
#: Outside the pool: one LISTEN connection for every channel (coordination, teams, a2a,
#: federation) and one lease connection.
OUTSIDE_POOL = 2


async def node_sessions(conn: asyncpg.Connection, database: str) -> int:
    """Sessions connected to ``database`` other than the counting connection."""
    count = await conn.fetchval(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return int(count)


async def test_a_node_on_postgresql_holds_its_pool_plus_listener_and_lease_connections(
    node_factory: Any, postgres_server: ThrowawayPostgres
) -> None:
    dsn = await fresh_database(postgres_server, "connections")
    database = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    node = node_factory("pg", CORAL_DATABASE_URL=dsn, CORAL_DATABASE_POOL_SIZE=str(POOL_SIZE))
    watcher = await asyncpg.connect(postgres_server.dsn)  # another database: not counted
    clients = [CoralClient(node.http, Identity.generate()) for _ in range(6)]
    try:
        # Everything that opens database connections at start or on first use.
        await asyncio.gather(
            *(c.register(AgentManifest(name=f"a{i}")) for i, c in enumerate(clients))
        )
        card = await asyncio.to_thread(node.get_json, "/.well-known/agent-card.json")
        assert card["name"]
        snapshot = await asyncio.to_thread(node.get_json, "/v1/dashboard/snapshot")
        assert snapshot

        first, *others = clients
        thread = await first.create_thread("load", [f"a{i}" for i in range(1, len(clients))])
        counts: list[int] = []

        async def wait_for_mention(client: CoralClient) -> int:
            got = await client.wait("mention", after=0, timeout_ms=20_000)
            assert got.entries, "the wait timed out before the message arrived"
            return len(got.entries)

        waits = [asyncio.create_task(wait_for_mention(c)) for c in others]
        sends = [
            asyncio.create_task(first.send(thread.id, f"m{n}", mentions=[c.did for c in others]))
            for n in range(20)
        ]
        while not all(t.done() for t in sends + waits):
            counts.append(await node_sessions(watcher, database))
            await asyncio.wait(sends + waits, timeout=0.05)
        await asyncio.gather(*sends)
        assert all(n >= 1 for n in await asyncio.gather(*waits))
        counts.append(await node_sessions(watcher, database))
        history = await first.history(thread.id)
        assert len([e for e in history.entries if not e.system]) == 20
        counts.append(await node_sessions(watcher, database))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await watcher.close()

    assert counts, "no sample taken"
    assert max(counts) <= POOL_SIZE + OUTSIDE_POOL, counts
    assert min(counts) >= 2, counts  # the node's sessions are the ones counted
