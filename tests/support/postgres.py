"""One throwaway PostgreSQL server per test session, and a fresh database per test.

``postgres_server`` (a fixture in ``tests/conftest.py``) starts the server
once (initdb + postgres on a free 127.0.0.1 port, see
``tests.support.throwaway_postgres``); ``fresh_database`` gives a test an
empty database on it, ``fresh_schema_pool`` (the ``postgres_pool`` fixture)
an empty schema, which is cheaper. Without server binaries the PostgreSQL tests skip with
a loud reason, and fail under ``CI=true`` (``tests.support.requirements``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator

import asyncpg

from tests.support.requirements import missing_requirement
from tests.support.throwaway_postgres import ThrowawayPostgres, find_postgres_bin

_database_names = itertools.count()


def session_server() -> Iterator[ThrowawayPostgres]:
    """Start the session's server (skips, or fails under CI, when not installed)."""
    if find_postgres_bin() is None:
        message = "PostgreSQL binaries (initdb/postgres) not found: POSTGRESQL TESTS SKIPPED"
        warnings.warn(message, stacklevel=1)
        missing_requirement(message)
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.stop()


async def fresh_database(server: ThrowawayPostgres, prefix: str = "test") -> str:
    """Create an empty database on ``server`` and return its DSN."""
    name = f"{prefix}_{next(_database_names)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn_for(name)


async def fresh_schema(server: ThrowawayPostgres) -> str:
    """Create an empty schema on ``server``'s default database; returns its name."""
    name = f"test_{next(_database_names)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    return name


async def schema_pool(server: ThrowawayPostgres, schema: str, *, max_size: int = 4) -> asyncpg.Pool:
    """A pool whose connections work in ``schema`` (one per simulated node process)."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        server.dsn, min_size=1, max_size=max_size, server_settings={"search_path": schema}
    )
    return pool


async def fresh_schema_pool(server: ThrowawayPostgres, *, max_size: int = 4) -> asyncpg.Pool:
    """A pool working in a new, empty schema (cheaper than a new database)."""
    return await schema_pool(server, await fresh_schema(server), max_size=max_size)
