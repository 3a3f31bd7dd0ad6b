"""Small helpers shared by the ledger tests: a settable clock and fresh PostgreSQL databases."""

from __future__ import annotations

import itertools

import asyncpg

from tests.support.throwaway_postgres import ThrowawayPostgres

_database_names = itertools.count()


class Clock:
    """A settable millisecond clock, so tests decide when deadlines pass."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


async def create_database(server: ThrowawayPostgres) -> str:
    """Create an empty database on ``server`` and return its DSN."""
    name = f"ledger_{next(_database_names)}"
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.dsn_for(name)
