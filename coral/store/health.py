"""Read-only health probes of the databases, for ``coral-node doctor``.

The doctor reports; these functions only touch the database drivers, so the
CLI never imports one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from coral.protocol.errors import StorageUnavailable


@dataclass(frozen=True, slots=True)
class SqliteHealth:
    """What a probe of one SQLite file found."""

    journal_mode: str
    quick_check: str
    sqlite_version: str


def probe_sqlite(path: Path) -> SqliteHealth:
    """Switch ``path`` to WAL (creating the file if absent) and run ``PRAGMA quick_check(1)``.

    Raises:
        StorageUnavailable: the file is not a readable SQLite database (message: the driver's).
    """
    try:
        conn = sqlite3.connect(path, timeout=5)
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            verdict = str(conn.execute("PRAGMA quick_check(1)").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageUnavailable(str(exc)) from exc
    return SqliteHealth(mode, verdict, sqlite3.sqlite_version)


async def postgres_server_version(database_url: str, timeout_s: float) -> str:
    """Connect to the PostgreSQL server at ``database_url`` and return its version.

    Raises:
        ImportError: asyncpg is not installed.
        OSError, asyncpg errors, TimeoutError: the server cannot be reached or refuses us.
    """
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=timeout_s)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
