"""``PostgresLease`` on a real server: one leader, fail-over, leased jobs run on the leader only.

Two leases on one database stand for two replicas of one logical node. The
tests wait for states (with a hang guard) and never assert on elapsed time:
fail-over is bounded by retry periods, so the guard is many periods long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import pytest

from coral.node.leases import LocalLease, while_leading
from coral.store.lease_postgres import PostgresLease
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

#: Short so fail-over is quick; the hang guard is many retry periods.
RETRY_S = 0.2
HANG_GUARD_S = 60
_names = itertools.count()


async def until(condition: object) -> None:
    """Poll ``condition()`` until it is true (the caller bounds it with a hang guard)."""
    assert callable(condition)
    while not condition():
        await asyncio.sleep(RETRY_S / 4)


@dataclass
class Replica:
    lease: PostgresLease
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def two_leases(postgres_server: ThrowawayPostgres) -> AsyncIterator[list[Replica]]:
    name = f"test.lease.{next(_names)}"
    replicas = []
    for _ in range(2):
        lease = PostgresLease(postgres_server.dsn, name, retry_s=RETRY_S)
        replicas.append(Replica(lease, asyncio.create_task(lease.run())))
    yield replicas
    for replica in replicas:
        await replica.stop()


async def one_leader(replicas: list[Replica]) -> tuple[Replica, Replica]:
    """Wait until one leads and the other has connected (so it has asked); (leader, other)."""
    async with asyncio.timeout(HANG_GUARD_S):
        await asyncio.wait(
            [asyncio.ensure_future(r.lease.acquired()) for r in replicas],
            return_when=asyncio.FIRST_COMPLETED,
        )
        leader = replicas[0] if replicas[0].lease.held else replicas[1]
        other = replicas[1] if leader is replicas[0] else replicas[0]
        await until(lambda: other.lease.backend_pid is not None)
    return leader, other


async def lock_holders(dsn: str) -> list[int]:
    """Server pids holding a granted advisory lock (each test's name is its own)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


async def test_exactly_one_of_two_leads(
    postgres_server: ThrowawayPostgres, two_leases: list[Replica]
) -> None:
    leader, other = await one_leader(two_leases)
    assert leader.lease.held
    assert not other.lease.held
    # The database agrees: the leader's connection holds the lock, the other's does not.
    holders = await lock_holders(postgres_server.dsn)
    assert leader.lease.backend_pid in holders
    assert other.lease.backend_pid not in holders


async def test_a_new_leader_follows_once_the_leaders_connection_is_killed(
    postgres_server: ThrowawayPostgres, two_leases: list[Replica]
) -> None:
    leader, other = await one_leader(two_leases)
    pid = leader.lease.backend_pid
    assert pid is not None
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    # Lost connection = lost lease; then one of the two leads on a live connection
    # (normally the other: the old leader sits out a round, but either is correct).
    async with asyncio.timeout(HANG_GUARD_S):
        await until(lambda: not leader.lease.held or leader.lease.backend_pid != pid)
        await until(lambda: leader.lease.held or other.lease.held)
    assert leader.lease.held != other.lease.held
    new_leader = leader if leader.lease.held else other
    assert new_leader.lease.backend_pid != pid
    assert new_leader.lease.backend_pid in await lock_holders(postgres_server.dsn)


async def test_the_other_leads_once_the_leader_stops(two_leases: list[Replica]) -> None:
    leader, other = await one_leader(two_leases)
    await leader.stop()  # closes its connection, which releases the lock
    assert not leader.lease.held
    async with asyncio.timeout(HANG_GUARD_S):
        await other.lease.acquired()
    assert other.lease.held


async def test_a_leased_job_runs_on_the_leader_only(two_leases: list[Replica]) -> None:
    runs: dict[int, int] = {0: 0, 1: 0}

    def job_for(index: int) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            while True:
                runs[index] += 1
                await asyncio.sleep(RETRY_S / 4)

        return job

    jobs = [
        asyncio.create_task(while_leading(replica.lease, job_for(i)))
        for i, replica in enumerate(two_leases)
    ]
    try:
        leader, _ = await one_leader(two_leases)
        lead = two_leases.index(leader)  # the other never acquired, so never ran it
        async with asyncio.timeout(HANG_GUARD_S):
            await until(lambda: runs[lead] >= 5)
        assert runs[1 - lead] == 0
    finally:
        for task in jobs:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_local_lease_is_always_held() -> None:
    lease = LocalLease()
    assert lease.held
    async with asyncio.timeout(HANG_GUARD_S):
        await lease.acquired()


async def test_a_leased_job_moves_to_the_other_when_the_leader_dies(
    two_leases: list[Replica],
) -> None:
    running: dict[int, bool] = {0: False, 1: False}
    started: dict[int, int] = {0: 0, 1: 0}

    def job_for(index: int) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            running[index] = True
            started[index] += 1
            try:
                await asyncio.Event().wait()
            finally:
                running[index] = False

        return job

    jobs = [
        asyncio.create_task(while_leading(replica.lease, job_for(i)))
        for i, replica in enumerate(two_leases)
    ]
    try:
        leader, _ = await one_leader(two_leases)
        lead = two_leases.index(leader)
        async with asyncio.timeout(HANG_GUARD_S):
            await until(lambda: running[lead])
        await leader.stop()  # the replica dies: its connection closes, the lock is free
        async with asyncio.timeout(HANG_GUARD_S):
            await until(lambda: running[1 - lead])
            await until(lambda: not running[lead])  # the old leader's job was cancelled
        assert started[1 - lead] == 1
    finally:
        for task in jobs:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
