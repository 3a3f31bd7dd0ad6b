"""Ledger test fixtures: real SQLite files and a throwaway PostgreSQL server.

The PostgreSQL server starts once per session (initdb + postgres on a free
127.0.0.1 port, as an unprivileged user when the tests run as root); each
test gets its own fresh database on it. Without server binaries the
PostgreSQL tests skip with a loud reason.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from throwaway_postgres import ThrowawayPostgres, find_postgres_bin

from coral.ledger import LedgerService, LedgerStore
from coral.protocol.identity import Identity
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import SqliteLedgerStore

_database_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """A private PostgreSQL server for the whole session (skips if not installed)."""
    if find_postgres_bin() is None:
        message = "PostgreSQL binaries (initdb/postgres) not found: PostgreSQL LEDGER TESTS SKIPPED"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.stop()


async def create_database(server: ThrowawayPostgres) -> str:
    """Create an empty database on ``server`` and return its DSN."""
    name = f"ledger_{next(_database_names)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn_for(name)


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> LedgerStore:
    """Each ledger store adapter in turn."""
    store: LedgerStore = request.getfixturevalue(f"{request.param}_store")
    return store


class Clock:
    """A settable millisecond clock, so tests decide when deadlines pass."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


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
