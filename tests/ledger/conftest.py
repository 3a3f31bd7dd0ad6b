"""Ledger test fixtures: real SQLite files and a throwaway PostgreSQL server.

The PostgreSQL server is the session's one (``postgres_server`` in
``tests/conftest.py``); each test gets its own fresh database on it. Without
server binaries the PostgreSQL tests skip with a loud reason (and fail under
CI=true).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.ledger import LedgerService, LedgerStore
from coral.ledger.memory import MemoryLedgerStore
from coral.protocol.identity import Identity
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger.ledger_support import Clock, create_database
from tests.support.throwaway_postgres import ThrowawayPostgres


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteLedgerStore]:
    """A started SQLite ledger store on a fresh file."""
    store = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    yield store
    await store.close()


@pytest.fixture
async def postgres_store(postgres_server: ThrowawayPostgres) -> AsyncIterator[PostgresLedgerStore]:
    """A started PostgreSQL ledger store on a fresh database."""
    store = await PostgresLedgerStore.open(await create_database(postgres_server))
    yield store
    await store.close()


@pytest.fixture
async def memory_store() -> AsyncIterator[MemoryLedgerStore]:
    """The in-memory twin (``coral.ledger.memory``)."""
    store = MemoryLedgerStore()
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> LedgerStore:
    """Each ledger store adapter, and the in-memory twin, in turn."""
    store: LedgerStore = request.getfixturevalue(f"{request.param}_store")
    return store


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node_identity() -> Identity:
    return Identity.from_seed(b"n" * 32)


@pytest.fixture
def service(any_store: LedgerStore, node_identity: Identity, clock: Clock) -> LedgerService:
    """A LedgerService over each store adapter, with a test clock."""
    return LedgerService(any_store, node_identity, clock)
