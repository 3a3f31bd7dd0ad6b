"""Held-agent records and MCP wait cursors: SQLite and the in-memory twins behave alike.

Every test runs once per implementation; a PostgreSQL store joins by adding a parameter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.api.mcp.held_agents import HeldAgentRecords, HeldAgentRow, MemoryHeldAgentRecords
from coral.api.mcp.tools import MemoryWaitCursors, WaitCursors
from coral.protocol.errors import Conflict
from coral.store.interop_sqlite import SqliteHeldAgentRecords
from coral.store.sqlite import SqliteDatabase
from coral.store.wait_cursors_sqlite import SqliteWaitCursors


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "node.db")
    await database.open()
    yield database
    await database.close()


@pytest.fixture(params=["sqlite", "memory"])
async def records(request: pytest.FixtureRequest, db: SqliteDatabase) -> HeldAgentRecords:
    if request.param == "memory":
        return MemoryHeldAgentRecords()
    store = SqliteHeldAgentRecords(db)
    await store.open()
    return store


@pytest.fixture(params=["sqlite", "memory"])
async def cursors(request: pytest.FixtureRequest, db: SqliteDatabase) -> WaitCursors:
    if request.param == "memory":
        return MemoryWaitCursors()
    store = SqliteWaitCursors(db)
    await store.open()
    return store


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
