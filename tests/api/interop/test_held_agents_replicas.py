"""Node-held agents shared by replicas: two ``HeldAgents`` on one PostgreSQL schema.

Each stands for one replica (its own pool, its own memory, the same node key
and separate key folders): a held agent one replica makes is the same agent,
with the same key, on the other; replicas racing to make one (the
``a2a-gateway``) end with one agent, one key and one directory record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.agents.directory import AgentDirectory
from coral.api.mcp.held_agents import GATEWAY_KIND, MCP_KIND, HeldAgents
from coral.coordination.gateway import MessageGateway
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.signing import sign_message
from coral.protocol.verify import MessageVerifier
from coral.store.agents_postgres import PostgresAgentStore
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.interop_postgres import PostgresHeldAgentRecords, PostgresHeldKeys
from coral.store.seen_postgres import PostgresSeenStore
from tests.support.postgres import fresh_schema, schema_pool
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

NODE = Identity.from_seed(b"\x61" * 32)


@pytest.fixture
async def two_replicas(
    postgres_server: ThrowawayPostgres, tmp_path: Path
) -> AsyncIterator[list[HeldAgents]]:
    schema = await fresh_schema(postgres_server)
    pools = [await schema_pool(postgres_server, schema) for _ in range(2)]
    replicas = []
    for n, pool in enumerate(pools):
        agents, seen = PostgresAgentStore(pool), PostgresSeenStore(pool)
        store, records = PostgresCoordinationStore(pool), PostgresHeldAgentRecords(pool)
        await agents.open()
        await seen.open()
        await store.migrate()
        await records.open()
        directory = AgentDirectory(agents, NODE, now_ms)
        engine = CoordinationService(
            store, node_id=NODE.did, clock=now_ms, sign_event=lambda m: sign_message(m, NODE)
        )
        gateway = MessageGateway(MessageVerifier(), seen, engine, directory)
        keys = PostgresHeldKeys(pool, NODE)
        held = HeldAgents(records, tmp_path / f"keys-{n}", NODE, directory, gateway, keys=keys)
        await held.open()
        replicas.append(held)
    yield replicas
    for pool in pools:
        await pool.close()


GATEWAY = AgentManifest(name="a2a-gateway", capabilities=(GATEWAY_KIND,))


async def test_replicas_racing_to_make_the_gateway_share_one_agent(
    two_replicas: list[HeldAgents],
) -> None:
    one, two = two_replicas
    made = await asyncio.gather(
        one.ensure(GATEWAY, GATEWAY_KIND), two.ensure(GATEWAY, GATEWAY_KIND)
    )
    assert made[0].did == made[1].did
    assert made[0].identity.seed == made[1].identity.seed
    assert [r.agent for r in await one.directory.search(name="a2a-gateway")] == [made[0].did]
    assert [row.did for row in await one.records.all()] == [made[0].did]
    assert (await two.ensure(GATEWAY, GATEWAY_KIND)).did == made[0].did  # and it stays


async def test_an_agent_made_on_one_replica_is_found_signed_for_and_retired_on_the_other(
    two_replicas: list[HeldAgents],
) -> None:
    one, two = two_replicas
    ann, secret = await one.create(AgentManifest(name="ann"), MCP_KIND, with_secret=True)
    assert secret is not None
    found = await two.by_secret(secret)
    assert found.did == ann.did and found.identity.seed == ann.identity.seed
    await two.retire(ann.did)
    assert await one.records.all() == []
    assert await one.keys.get("ann", MCP_KIND) is None
    assert not await one.directory.is_registered(ann.did)
