"""Held-agent records, held keys and MCP wait cursors: SQLite (files for keys), PostgreSQL
and the in-memory twins behave alike.

Every test runs once per implementation; the PostgreSQL cases skip with a reason when no
server binaries are installed (and fail under CI=true). The last tests are PostgreSQL's
own: replicas of one node share held keys and cursors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from coral.api.mcp.held_agents import HeldAgentRecords, HeldAgentRow, MemoryHeldAgentRecords
from coral.api.mcp.held_keys import FileHeldKeys, HeldKeys
from coral.api.mcp.tools import MemoryWaitCursors, WaitCursors
from coral.protocol.errors import Conflict
from coral.protocol.identity import Identity
from coral.store.interop_postgres import (
    HeldKeyUnreadable,
    PostgresForwardClaims,
    PostgresHeldAgentRecords,
    PostgresHeldKeys,
)
from coral.store.interop_sqlite import SqliteHeldAgentRecords
from coral.store.sqlite import SqliteDatabase
from coral.store.wait_cursors_postgres import PostgresWaitCursors
from coral.store.wait_cursors_sqlite import SqliteWaitCursors

NODE = Identity.from_seed(b"\x42" * 32)
IMPLEMENTATIONS = ["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "node.db")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
async def sqlite_records(db: SqliteDatabase) -> HeldAgentRecords:
    store = SqliteHeldAgentRecords(db)
    await store.open()
    return store


@pytest.fixture
async def memory_records() -> HeldAgentRecords:
    return MemoryHeldAgentRecords()


@pytest.fixture
async def postgres_records(postgres_pool: asyncpg.Pool) -> HeldAgentRecords:
    store = PostgresHeldAgentRecords(postgres_pool)
    await store.open()
    return store


@pytest.fixture(params=IMPLEMENTATIONS)
def records(request: pytest.FixtureRequest) -> HeldAgentRecords:
    """Each HeldAgentRecords in turn (PostgreSQL on a fresh schema of the session's server)."""
    chosen: HeldAgentRecords = request.getfixturevalue(f"{request.param}_records")
    return chosen


@pytest.fixture
async def sqlite_cursors(db: SqliteDatabase) -> WaitCursors:
    store = SqliteWaitCursors(db)
    await store.open()
    return store


@pytest.fixture
async def memory_cursors() -> WaitCursors:
    return MemoryWaitCursors()


@pytest.fixture
async def postgres_cursors(postgres_pool: asyncpg.Pool) -> WaitCursors:
    store = PostgresWaitCursors(postgres_pool)
    await store.open()
    return store


@pytest.fixture(params=IMPLEMENTATIONS)
def cursors(request: pytest.FixtureRequest) -> WaitCursors:
    """Each WaitCursors in turn."""
    chosen: WaitCursors = request.getfixturevalue(f"{request.param}_cursors")
    return chosen


@pytest.fixture
async def files_keys(tmp_path: Path) -> HeldKeys:
    return FileHeldKeys(tmp_path / "keys")


@pytest.fixture
async def postgres_keys(postgres_pool: asyncpg.Pool) -> HeldKeys:
    await PostgresHeldAgentRecords(postgres_pool).open()  # the keys table's migration
    return PostgresHeldKeys(postgres_pool, NODE)


@pytest.fixture(params=["files", pytest.param("postgres", marks=pytest.mark.postgres)])
def keys(request: pytest.FixtureRequest) -> HeldKeys:
    """Each HeldKeys in turn: key files, and sealed rows on PostgreSQL."""
    chosen: HeldKeys = request.getfixturevalue(f"{request.param}_keys")
    return chosen


ANN = HeldAgentRow("did:key:ann", "ann", "mcp")
BO = HeldAgentRow("did:key:bo", "bo", "a2a-proxy", "https://bo.example/card")


async def test_held_agents_are_listed_and_found_by_secret_hash(records: HeldAgentRecords) -> None:
    await records.add(ANN, "hash-ann", 1)
    await records.add(BO, None, 2)
    assert sorted(await records.all(), key=lambda r: r.name) == [ANN, BO]
    assert await records.did_for_secret("hash-ann") == ANN.did
    assert await records.did_for_secret("hash-other") is None


async def test_a_taken_did_name_or_secret_is_a_conflict_storing_nothing(
    records: HeldAgentRecords,
) -> None:
    await records.add(ANN, "hash-ann", 1)
    for clash, secret in [
        (HeldAgentRow(ANN.did, "other", "mcp"), None),
        (HeldAgentRow("did:key:x", ANN.name, "mcp"), None),
        (HeldAgentRow("did:key:y", "y", "mcp"), "hash-ann"),
    ]:
        with pytest.raises(Conflict) as raised:
            await records.add(clash, secret, 2)
        assert raised.value.reason == "held_agent_exists"
    assert await records.all() == [ANN]


async def test_removed_agents_are_forgotten_with_their_secret(records: HeldAgentRecords) -> None:
    await records.add(ANN, "hash-ann", 1)
    await records.remove(ANN.did)
    await records.remove("did:key:unknown")
    assert await records.all() == []
    assert await records.did_for_secret("hash-ann") is None
    await records.add(ANN, "hash-ann", 3)  # the name is free again
    assert await records.all() == [ANN]


async def test_wait_cursors_start_at_zero_and_only_move_forward(cursors: WaitCursors) -> None:
    assert await cursors.get("ann", "message") == 0
    await cursors.put("ann", "message", 5)
    await cursors.put("ann", "message", 3)
    await cursors.put("ann", "mention", 2)
    assert await cursors.get("ann", "message") == 5
    assert await cursors.get("ann", "mention") == 2
    assert await cursors.get("bo", "message") == 0


async def test_held_keys_are_made_once_kept_and_forgotten(keys: HeldKeys) -> None:
    assert await keys.get("ann", "mcp") is None
    made = await keys.get_or_create("ann", "mcp")
    assert (await keys.get_or_create("ann", "mcp")).did == made.did
    found = await keys.get("ann", "mcp")
    assert found is not None and found.seed == made.seed
    assert (await keys.get_or_create("bo", "a2a-proxy")).did != made.did
    await keys.forget("ann", "mcp")
    await keys.forget("nobody", "mcp")
    assert await keys.get("ann", "mcp") is None
    assert (await keys.get_or_create("ann", "mcp")).did != made.did  # a new agent, a new key


@pytest.mark.postgres
async def test_replicas_racing_for_one_held_name_all_get_the_same_key(
    postgres_pool: asyncpg.Pool,
) -> None:
    await PostgresHeldAgentRecords(postgres_pool).open()
    replicas = [PostgresHeldKeys(postgres_pool, NODE) for _ in range(4)]
    made = await asyncio.gather(*(r.get_or_create("a2a-gateway", "a2a-gateway") for r in replicas))
    assert len({identity.did for identity in made}) == 1
    assert len({identity.seed for identity in made}) == 1


@pytest.mark.postgres
async def test_held_keys_are_sealed_under_the_node_key(postgres_pool: asyncpg.Pool) -> None:
    await PostgresHeldAgentRecords(postgres_pool).open()
    made = await PostgresHeldKeys(postgres_pool, NODE).get_or_create("ann", "mcp")
    async with postgres_pool.acquire() as conn:
        stored = bytes(await conn.fetchval("SELECT sealed FROM interop_keys WHERE name = 'ann'"))
    assert made.seed not in stored
    other_node = PostgresHeldKeys(postgres_pool, Identity.from_seed(b"\x43" * 32))
    with pytest.raises(HeldKeyUnreadable):
        await other_node.get("ann", "mcp")


@pytest.mark.postgres
async def test_a_wait_cursor_moved_on_one_replica_is_where_another_starts(
    postgres_pool: asyncpg.Pool,
) -> None:
    one, two = PostgresWaitCursors(postgres_pool), PostgresWaitCursors(postgres_pool)
    await asyncio.gather(one.open(), two.open())
    await one.put("ann", "message", 7)
    assert await two.get("ann", "message") == 7
    await asyncio.gather(two.put("ann", "message", 9), one.put("ann", "message", 8))
    assert await one.get("ann", "message") == 9


@pytest.mark.postgres
async def test_one_replica_claims_each_proxy_message(postgres_pool: asyncpg.Pool) -> None:
    await PostgresHeldAgentRecords(postgres_pool).open()
    replicas = [PostgresForwardClaims(postgres_pool) for _ in range(3)]
    won = await asyncio.gather(*(r.claim("did:key:proxy", 5) for r in replicas))
    assert sorted(won) == [False, False, True]
    assert await replicas[0].claim("did:key:proxy", 6)
    assert await replicas[1].claim("did:key:other", 5)
    assert await replicas[2].prune(0) == 0
    assert await replicas[2].prune(2**62) == 3
    assert await replicas[0].claim("did:key:proxy", 5)  # forgotten: claimable again
