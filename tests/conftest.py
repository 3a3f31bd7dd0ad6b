"""Shared fixtures: real node processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from tests.support.nodeproc import NodeProcess
from tests.support.postgres import fresh_schema_pool, session_server
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
