"""``PostgresLease``: a session-level advisory lock held on a dedicated connection.

The holder keeps ``pg_try_advisory_lock(hashtext(name))`` on its own
connection (not the pool's) for as long as it leads; PostgreSQL releases the
lock when that connection ends, so a dead holder's lease frees itself. Every
``retry_s`` seconds a follower tries to take the lock and a leader checks its
connection still answers; a leader whose connection fails stops leading at
once (lost connection = lost lease) and sits out one extra retry period,
so a follower that is still connected normally takes over (either one
leading is correct).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger("coral.store.lease")


class PostgresLease:
    """Leads while holding an advisory lock on ``name`` (see the module docstring)."""

    def __init__(self, dsn: str, name: str, *, retry_s: float = 5.0) -> None:
        self.dsn = dsn
        self.name = name
        self.retry_s = retry_s
        self._held = asyncio.Event()
        self._free = asyncio.Event()
        self._free.set()
        self._conn: Any = None  # the asyncpg connection, while open
        self._just_lost = False  # set on losing the lease: sit out one round

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._held.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the lease's connection, while one is open."""
        if self._conn is None:
            return None
        pid: int = self._conn.get_server_pid()
        return pid

    async def acquired(self) -> None:
        """Return once the lock is held."""
        await self._held.wait()

    async def lost(self) -> None:
        """Return once the lock is not held."""
        await self._free.wait()

    def _set(self, held: bool) -> None:
        if held and not self._held.is_set():
            log.info("lease %s: now leading", self.name)
        elif not held and self._held.is_set():
            log.warning("lease %s: no longer leading", self.name)
            self._just_lost = True
        (self._held if held else self._free).set()
        (self._free if held else self._held).clear()

    async def run(self) -> None:
        """Take the lock, keep it, take it again after a lost connection; until cancelled.

        Errors reaching the server are logged and retried every ``retry_s``.

        Raises:
            asyncio.CancelledError: the only way it ends; the connection is closed
                (releasing the lock) first.
        """
        import asyncpg

        try:
            while True:
                try:
                    if self._conn is None or self._conn.is_closed():
                        self._conn = await asyncpg.connect(self.dsn)
                        self._conn.add_termination_listener(self._on_terminated)
                    if self.held:
                        await self._conn.fetchval("SELECT 1")
                    else:
                        got = await self._conn.fetchval(
                            "SELECT pg_try_advisory_lock(hashtext($1))", self.name
                        )
                        self._set(bool(got))
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    self._set(False)
                    log.warning("lease %s: %s", self.name, exc)
                    await self._drop()
                await asyncio.sleep(self.retry_s)
                if self._just_lost:
                    self._just_lost = False
                    await asyncio.sleep(self.retry_s)
        finally:
            self._set(False)
            await self._drop()

    def _on_terminated(self, _conn: Any) -> None:
        self._set(False)  # lost connection = lost lease, without waiting for the next check

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=self.retry_s)
            if not conn.is_closed():
                conn.terminate()
