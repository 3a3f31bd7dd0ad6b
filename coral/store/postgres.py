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


class DeferredStatements:
    """Statements a synchronous write hook adds to a PostgreSQL write's open transaction.

    A hook cannot await, so on PostgreSQL a coordination write hands its hooks
    this collector as ``WriteScope.transaction``; another store on the same
    database adds its statements here, and the write runs them on its own
    connection right after the hooks return, before it commits: they commit
    with the write or not at all. A *guard* statement must return a row (an
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING 1``); when one returns none
    the write is a repeat and the rest is skipped.
    """

    __slots__ = ("_statements",)

    def __init__(self) -> None:
        self._statements: list[tuple[str, tuple[object, ...], bool]] = []

    def add(self, sql: str, *args: object, guard: bool = False) -> None:
        """Queue ``sql`` with ``args`` (``$1``... placeholders) to run in the transaction."""
        self._statements.append((sql, args, guard))

    def __len__(self) -> int:
        return len(self._statements)

    async def run(self, conn: asyncpg.Connection) -> bool:
        """Run the queued statements in order on ``conn``; False when a guard returned no row.

        The queue is emptied either way, so hooks may add more and run again.

        Raises:
            asyncpg.PostgresError: a statement failed (the caller's transaction rolls back).
        """
        statements, self._statements = self._statements, []
        for sql, args, guard in statements:
            if guard:
                if await conn.fetchval(sql, *args) is None:
                    return False
            else:
                await conn.execute(sql, *args)
        return True


def joined(transaction: object) -> DeferredStatements:
    """The ``DeferredStatements`` of a PostgreSQL write another store opened.

    Raises:
        TypeError: ``transaction`` is not a PostgreSQL write's statement collector.
    """
    if not isinstance(transaction, DeferredStatements):
        raise TypeError(f"not a PostgreSQL transaction: {type(transaction).__name__}")
    return transaction
