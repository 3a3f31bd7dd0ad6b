"""The agent directory's storage port: SQLite, PostgreSQL and the in-memory twin alike.

Every test runs once per implementation (the ``store`` fixture's params: the
twin, then both backends through ``open_backend``, see
``tests/support/backends.py``); the PostgreSQL cases skip with a reason when
no server binaries are installed (and fail under CI=true).
"""

from __future__ import annotations

import pytest

from coral.agents.memory import MemoryAgentStore
from coral.agents.ports import AgentStore
from coral.protocol.agent import AgentManifest, AgentRecord
from coral.protocol.identity import Identity
from coral.store.agents_postgres import PostgresAgentStore
from coral.store.agents_sqlite import SqliteAgentStore
from tests.support.backends import BACKENDS, OpenBackend

NODE = Identity.from_seed(b"\x90" * 32).did
OTHER_NODE = Identity.from_seed(b"\x91" * 32).did
DIDS = [Identity.from_seed(bytes([i + 1]) * 32).did for i in range(4)]


@pytest.fixture(params=["memory", *BACKENDS])
async def store(request: pytest.FixtureRequest, open_backend: OpenBackend) -> AgentStore:
    """Each AgentStore in turn (PostgreSQL on a fresh schema of the session's server)."""
    if request.param == "memory":
        return MemoryAgentStore()
    backend = await open_backend(request.param)
    chosen: SqliteAgentStore | PostgresAgentStore = backend.pick(
        sqlite=SqliteAgentStore, postgresql=PostgresAgentStore
    )
    await chosen.open()
    return chosen


def record(
    did: str,
    name: str,
    *,
    version: int = 1,
    capabilities: tuple[str, ...] = (),
    home: str = NODE,
    deleted: bool = False,
) -> AgentRecord:
    return AgentRecord(
        agent=did,
        home_node=home,
        manifest=AgentManifest(name=name, capabilities=capabilities),
        version=version,
        updated_at=1_770_000_000_000 + version,
        deleted=deleted,
    )


async def test_put_keeps_only_newer_versions(store: AgentStore) -> None:
    assert await store.get(DIDS[0]) is None
    assert await store.put(record(DIDS[0], "alpha", version=2)) is True
    assert await store.put(record(DIDS[0], "beta", version=2)) is False
    assert await store.put(record(DIDS[0], "gamma", version=1)) is False
    stored = await store.get(DIDS[0])
    assert stored is not None and stored.manifest.name == "alpha"
    assert await store.put(record(DIDS[0], "delta", version=3)) is True
    stored = await store.get(DIDS[0])
    assert stored == record(DIDS[0], "delta", version=3)


async def test_search_filters_and_orders_by_name_then_did(store: AgentStore) -> None:
    await store.put(record(DIDS[2], "bravo", capabilities=("text.summarize",)))
    await store.put(record(DIDS[1], "alpha", capabilities=("text.summarize", "math")))
    await store.put(record(DIDS[0], "bravo", home=OTHER_NODE))
    await store.put(record(DIDS[3], "charlie", deleted=True, capabilities=("math",)))

    everyone = await store.search()
    assert [(r.manifest.name, r.agent) for r in everyone] == [
        ("alpha", DIDS[1]),
        *sorted([("bravo", DIDS[0]), ("bravo", DIDS[2])]),
    ]
    assert {r.agent for r in await store.search(name="bravo")} == {DIDS[0], DIDS[2]}
    assert [r.agent for r in await store.search(capability="math")] == [DIDS[1]]
    assert [r.agent for r in await store.search(capability="math", include_deleted=True)] == [
        DIDS[1],
        DIDS[3],
    ]
    assert [r.agent for r in await store.search(home_node=OTHER_NODE)] == [DIDS[0]]
    assert await store.search(name="bravo", capability="math") == []


async def test_a_new_version_replaces_the_capabilities(store: AgentStore) -> None:
    await store.put(record(DIDS[0], "alpha", capabilities=("math",)))
    await store.put(record(DIDS[0], "alpha", version=2, capabilities=("text.summarize",)))
    assert await store.search(capability="math") == []
    assert [r.agent for r in await store.search(capability="text.summarize")] == [DIDS[0]]


async def test_a_name_binds_to_the_first_did_per_scope(store: AgentStore) -> None:
    assert await store.name_holder("", "alpha") is None
    assert await store.bind_name("", "alpha", DIDS[0], 1) == DIDS[0]
    assert await store.bind_name("", "alpha", DIDS[1], 2) == DIDS[0]
    assert await store.bind_name("session-1", "alpha", DIDS[1], 3) == DIDS[1]
    assert await store.name_holder("", "alpha") == DIDS[0]
    assert await store.name_holder("session-1", "alpha") == DIDS[1]


async def test_rebind_moves_a_binding_once_and_is_idempotent(store: AgentStore) -> None:
    await store.bind_name("", "alpha", DIDS[0], 1)
    assert await store.rebind_name("", "alpha", DIDS[0], DIDS[1]) is True
    assert await store.rebind_name("", "alpha", DIDS[0], DIDS[1]) is True  # a retry
    assert await store.name_holder("", "alpha") == DIDS[1]
    assert await store.rebind_name("", "alpha", DIDS[2], DIDS[3]) is False
    assert await store.rebind_name("", "unbound", DIDS[0], DIDS[1]) is False
    assert await store.name_holder("", "alpha") == DIDS[1]
    assert await store.name_holder("", "unbound") is None


async def test_release_drops_only_the_holders_binding(store: AgentStore) -> None:
    await store.bind_name("", "alpha", DIDS[0], 1)
    await store.release_name("", "alpha", DIDS[1])
    assert await store.name_holder("", "alpha") == DIDS[0]
    await store.release_name("", "alpha", DIDS[0])
    assert await store.name_holder("", "alpha") is None
    assert await store.bind_name("", "alpha", DIDS[1], 2) == DIDS[1]
