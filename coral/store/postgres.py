"""PostgreSQL plumbing shared by every ``*_postgres`` store: the pool and migrations.

Each component (ledger, agents, seen, coordination, ...) owns an ordered list
of ``PostgresMigration`` steps and records how far it got in a
``schema_migrations`` table laid out as SQLite's (component, version). Steps
run once, each in its own transaction under a per-component advisory lock,
so several node processes starting against one database never apply a step
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncpg is the optional "postgres" extra: imported where a pool opens
    import asyncpg

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
)
"""

#: Serializes the bootstrap ``CREATE TABLE IF NOT EXISTS`` (itself racy in PostgreSQL).
_BOOTSTRAP_LOCK = "coral.schema_migrations"


@dataclass(frozen=True, slots=True)
class PostgresMigration:
    """One forward step of a component's schema (one or more statements)."""

    version: int
    sql: str


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://`` (or ``postgres://``) database URLs."""
    return url.startswith(("postgresql://", "postgres://"))


async def open_pool(dsn: str, *, max_size: int = 8) -> asyncpg.Pool:
    """A connection pool to ``dsn``; the caller closes it.

    Raises:
        OSError, asyncpg.PostgresError: the server is unreachable or refused us.
    """
    import asyncpg

    pool: asyncpg.Pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
    return pool


async def migrate(
    pool: asyncpg.Pool, component: str, migrations: Sequence[PostgresMigration]
) -> int:
    """Apply ``component``'s pending steps in order; return its schema version.

    Each step and its ``schema_migrations`` row commit together under
    ``pg_advisory_xact_lock`` on the component's name, so concurrent callers
    (replicas starting at once) apply each step exactly once.

    Raises:
        asyncpg.PostgresError: a step failed (it is rolled back; earlier steps stay).
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _BOOTSTRAP_LOCK)
            await conn.execute(_BOOTSTRAP)
        version = 0
        for step in sorted(migrations, key=lambda m: m.version):
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"coral.{component}"
                )
                done = await conn.fetchval(
                    "SELECT 1 FROM schema_migrations WHERE component = $1 AND version = $2",
                    component,
                    step.version,
                )
                if not done:
                    await conn.execute(step.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES ($1, $2)",
                        component,
                        step.version,
                    )
            version = step.version
        return version
