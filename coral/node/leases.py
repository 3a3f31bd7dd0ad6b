"""Leases: background work that must run once per logical node runs on one process.

Several node processes (replicas) sharing one PostgreSQL database form one
logical node; jobs such as expiring escrow or pruning seen ids must run on one
of them at a time, and move to another when that one dies. A ``Lease`` says
whether this process leads now. ``LocalLease`` (SQLite: one process owns the
file) is always held; ``coral.store.lease_postgres.PostgresLease`` holds a
PostgreSQL advisory lock on a dedicated connection while leading and retries
every ``retry_s`` seconds, so fail-over takes at most about one retry period
after the leader's connection drops.

Leased jobs must be safe to run twice: a leader that lost its connection may
still be finishing a job when the next leader starts one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from coral.config import Config

log = logging.getLogger("coral.node")

#: The lock name every replica of one logical node competes for.
BACKGROUND_LEASE = "coral.node.background"
#: How often a follower tries to take the lease (and a leader checks it still holds it).
LEASE_RETRY_S = 5.0


class Lease(Protocol):
    """Whether this process leads the background work now."""

    @property
    def held(self) -> bool:
        """True while this process holds the lease."""
        ...

    async def acquired(self) -> None:
        """Return once the lease is held (at once when it is)."""
        ...

    async def lost(self) -> None:
        """Return once the lease is not held (at once when it is not)."""
        ...

    async def run(self) -> None:
        """Take and keep the lease until cancelled.

        Raises:
            asyncio.CancelledError: the only way it ends; the lease is released.
        """
        ...


class LocalLease:
    """Always held: with SQLite one process owns the database file."""

    @property
    def held(self) -> bool:
        """Always True."""
        return True

    async def acquired(self) -> None:
        """Returns at once."""

    async def lost(self) -> None:
        """Never returns (until cancelled)."""
        await asyncio.Event().wait()

    async def run(self) -> None:
        """Nothing to keep; waits until cancelled."""
        await asyncio.Event().wait()


def background_lease(config: Config) -> Lease:
    """The lease for ``config``: with the stores on PostgreSQL, an advisory lock there."""
    if config.stores_on_postgres:
        from coral.store.lease_postgres import PostgresLease

        return PostgresLease(config.database_url, BACKGROUND_LEASE, retry_s=LEASE_RETRY_S)
    return LocalLease()


async def while_leading(
    lease: Lease, job: Callable[[], Awaitable[None]], *, restart_s: float = LEASE_RETRY_S
) -> None:
    """Run ``job()`` whenever ``lease`` is held; cancel it when the lease is lost.

    A job that ends on its own while leading (or fails; logged) starts again
    after ``restart_s`` seconds.

    Raises:
        asyncio.CancelledError: the only way it ends; the running job is cancelled too.
    """
    while True:
        await lease.acquired()
        task = asyncio.ensure_future(job())
        loss = asyncio.ensure_future(lease.lost())
        try:
            await asyncio.wait({task, loss}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, loss):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending
        if not task.cancelled() and task.exception() is not None:
            log.error("leased job failed", exc_info=task.exception())
        if lease.held:
            await asyncio.sleep(restart_s)
