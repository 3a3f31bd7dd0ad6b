"""Shared fixtures: real node processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from tests.support.backends import BACKENDS, NodeBackend, OpenBackend, StoreBackend
from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_database, fresh_schema_pool, session_server
from tests.support.throwaway_postgres import ThrowawayPostgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """A private PostgreSQL server shared by the whole session (skips if not installed)."""
    yield from session_server()


@pytest.fixture
async def postgres_pool(postgres_server: ThrowawayPostgres) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool to a fresh, empty schema on the session's server."""
    pool = await fresh_schema_pool(postgres_server)
    yield pool
    await pool.close()


@pytest.fixture
async def open_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenBackend]:
    """Open a ``StoreBackend`` by name ("sqlite" or "postgresql"); all close at teardown.

    See ``tests/support/backends.py``: use it from a fixture whose params mix
    an in-memory twin with ``BACKENDS``.
    """
    opened: list[StoreBackend] = []

    async def open_one(name: str) -> StoreBackend:
        if name == "sqlite":
            backend = await StoreBackend.open_sqlite(tmp_path / f"store-{len(opened)}.db")
        elif name == "postgresql":
            server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
            backend = await StoreBackend.open_postgresql(server)
        else:
            raise ValueError(f"no storage backend {name!r}")
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        await backend.close()


@pytest.fixture(params=BACKENDS)
async def store_backend(request: pytest.FixtureRequest, open_backend: OpenBackend) -> StoreBackend:
    """Each storage backend in turn: SQLite, then PostgreSQL (a fresh schema)."""
    return await open_backend(request.param)


@pytest.fixture(params=BACKENDS)
async def node_backend(request: pytest.FixtureRequest) -> NodeBackend:
    """Each backend for a node process: SQLite, then PostgreSQL (a fresh database).

    On PostgreSQL the node gets ``--database-url`` and nothing else, so every
    store is there (the default ``database_stores``).
    """
    if request.param == "sqlite":
        return NodeBackend("sqlite", [])
    server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
    dsn = await fresh_database(server, "node")
    return NodeBackend("postgresql", ["--database-url", dsn], dsn)


@pytest.fixture
def backend_node(node_factory, node_backend: NodeBackend) -> NodeProcess:
    """A started node on each backend in turn (see ``node_backend``)."""
    return node_factory("node", node_backend.args)


# Hypothesis' per-example deadline and its "generation is slow" check are
# wall-clock assertions; on a shared 2-core machine they fail correct code.
# Examples are bounded by count, never by time.
settings.register_profile("coral", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("coral")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[callable]:
    """Start nodes in separate data dirs; every node is killed at teardown."""
    started: list[NodeProcess] = []

    def start(name: str = "node", extra_args: list[str] | None = None, **env: str) -> NodeProcess:
        node = NodeProcess(tmp_path / name, extra_args or [], env)
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.kill()


@pytest.fixture
def node(node_factory) -> NodeProcess:
    return node_factory("node")
