"""``PostgresListener``: one LISTEN connection carrying several consumers' channels.

Each consumer must get the notices of its own channel only, and its
``connected`` (wake every local wait, re-read everything) after every
(re)connect and when it joins a connection that is already up: that is what
makes a notice missed while the connection was down lose nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from coral.store.listen_postgres import PostgresListener, Subscription
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

#: Bounds every wait: a broken listener fails here instead of hanging the suite.
HANG_GUARD_S = 60


class Consumer:
    """Records what the listener delivered to one subscription."""

    def __init__(self, channel: str) -> None:
        self.notices: list[str] = []
        self.connects = 0
        self.disconnects = 0
        self.sub = Subscription(channel, self._notice, self._connected, self._disconnected)

    def _notice(self, conn: object, pid: int, channel: str, payload: str) -> None:
        assert channel == self.sub.channel
        self.notices.append(payload)

    def _connected(self) -> None:
        self.connects += 1

    def _disconnected(self) -> None:
        self.disconnects += 1


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        while not check():
            await asyncio.sleep(0.02)


async def test_one_connection_serves_every_channel_and_reconnects_with_a_catch_up(
    postgres_server: ThrowawayPostgres,
) -> None:
    dsn = await fresh_database(postgres_server, "listen")
    listener = PostgresListener(dsn, retry_s=0.05)
    early, late = Consumer("chan_a"), Consumer("chan_b")
    await listener.subscribe(early.sub)  # before any connection: connected comes with it
    running = asyncio.create_task(listener.run())
    other = await asyncpg.connect(dsn)
    try:
        await until(lambda: early.connects == 1)
        await listener.subscribe(late.sub)  # joins the live connection: caught up at once
        assert late.connects == 1

        await other.execute("NOTIFY chan_a, 'one'")
        await other.execute("NOTIFY chan_b, 'two'")
        await until(lambda: early.notices == ["one"] and late.notices == ["two"])
        sessions = await other.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert len(sessions) == 1  # both channels on one connection

        # The server drops the connection: every consumer is told, then caught up again.
        await other.execute("SELECT pg_terminate_backend($1)", sessions[0]["pid"])
        await until(lambda: early.connects == 2 and late.connects == 2)
        assert (early.disconnects, late.disconnects) == (1, 1)
        assert listener.connections == 2
        await other.execute("NOTIFY chan_b, 'three'")
        await other.execute("NOTIFY chan_a, 'four'")
        await until(lambda: early.notices == ["one", "four"])
        assert late.notices == ["two", "three"]

        # A consumer that left gets nothing more; notices arrive in order, so
        # once the later one reached ``early`` the earlier one was dispatched.
        listener.unsubscribe(late.sub)
        await other.execute("NOTIFY chan_b, 'five'")
        await other.execute("NOTIFY chan_a, 'six'")
        await until(lambda: early.notices == ["one", "four", "six"])
        assert late.notices == ["two", "three"]
    finally:
        await other.close()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
