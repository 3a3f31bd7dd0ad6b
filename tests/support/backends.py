"""Run one test on both storage backends: SQLite and PostgreSQL.

Fixtures (in ``tests/conftest.py``), for any helper's tests to reuse:

- ``store_backend`` (params ``sqlite``, ``postgresql``): a ``StoreBackend``,
  an open SQLite file in the test's tmp dir or a pool on a fresh schema of
  the session's throwaway PostgreSQL server. A store test builds its store
  with ``backend.pick(sqlite=lambda db: ..., postgresql=lambda pool: ...)``,
  counts rows with ``backend.count(table)`` and simulates a restart with
  ``backend.reopen()`` (new connections to the same data).
- ``open_backend``: the same, by name (``await open_backend("sqlite")``),
  for fixtures whose params also include an in-memory twin:
  ``params=["memory", *BACKENDS]``.
- ``node_backend`` (same params): ``NodeBackend.args`` are the extra
  ``coral-node start`` arguments: nothing for SQLite, ``--database-url`` to a
  fresh database for PostgreSQL (every store there, the default).
  ``backend_node`` is a started node with them (``node_factory("node", ...)``).

The PostgreSQL variant carries the ``postgres`` marker; without server
binaries it skips with a loud reason, and under ``CI=true`` it fails
(``tests.support.postgres.session_server``), as every PostgreSQL test does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from coral.store.sqlite import SqliteDatabase
from tests.support.postgres import fresh_schema, schema_pool
from tests.support.throwaway_postgres import ThrowawayPostgres

T = TypeVar("T")

#: Parameters of every backend-parametrized fixture (the PostgreSQL one is marked).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@dataclass
class StoreBackend:
    """One open database a store test runs on: a SQLite file or a PostgreSQL schema."""

    name: str
    sqlite_path: Path | None = None
    server: ThrowawayPostgres | None = None
    schema: str | None = None
    db: SqliteDatabase | None = None
    pool: asyncpg.Pool | None = None

    @classmethod
    async def open_sqlite(cls, path: Path) -> StoreBackend:
        """An open SQLite database at ``path``."""
        backend = cls("sqlite", sqlite_path=path)
        await backend._connect()
        return backend

    @classmethod
    async def open_postgresql(cls, server: ThrowawayPostgres) -> StoreBackend:
        """A pool on a fresh, empty schema of ``server``."""
        backend = cls("postgresql", server=server, schema=await fresh_schema(server))
        await backend._connect()
        return backend

    async def _connect(self) -> None:
        if self.name == "sqlite":
            assert self.sqlite_path is not None
            self.db = SqliteDatabase(self.sqlite_path)
            await self.db.open()
        else:
            assert self.server is not None and self.schema is not None
            self.pool = await schema_pool(self.server, self.schema)

    def pick(
        self,
        *,
        sqlite: Callable[[SqliteDatabase], T],
        postgresql: Callable[[asyncpg.Pool], T],
    ) -> T:
        """``sqlite(db)`` or ``postgresql(pool)``, whichever this backend is."""
        if self.db is not None:
            return sqlite(self.db)
        assert self.pool is not None
        return postgresql(self.pool)

    async def fetchval(self, sql: str, *args: object) -> Any:
        """The first column of the first row of ``sql``; ``?`` placeholders on both backends."""
        if self.db is not None:
            row = await self.db.fetchone(sql, args)
            return None if row is None else row[0]
        assert self.pool is not None
        return await self.pool.fetchval(_numbered(sql), *args)

    async def fetchall(self, sql: str, *args: object) -> list[Any]:
        """Every row of ``sql`` (rows index by column name on both backends)."""
        if self.db is not None:
            return list(await self.db.fetchall(sql, args))
        assert self.pool is not None
        return list(await self.pool.fetch(_numbered(sql), *args))

    async def count(self, table: str) -> int:
        """Rows in ``table``."""
        return int(await self.fetchval(f"SELECT COUNT(*) FROM {table}"))

    async def reopen(self) -> None:
        """Close every connection and open new ones to the same data (a node restart)."""
        await self.close()
        await self._connect()

    async def close(self) -> None:
        """Close the connections (safe to call twice)."""
        if self.db is not None:
            db, self.db = self.db, None
            await db.close()
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()


#: The ``open_backend`` fixture: open a ``StoreBackend`` by name.
OpenBackend = Callable[[str], Awaitable[StoreBackend]]


def _numbered(sql: str) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


@dataclass(frozen=True)
class NodeBackend:
    """Where a node process under test keeps its stores."""

    name: str
    #: Extra ``coral-node start`` arguments selecting the backend.
    args: list[str]
    #: The PostgreSQL database the node uses (None on SQLite).
    dsn: str | None = None
