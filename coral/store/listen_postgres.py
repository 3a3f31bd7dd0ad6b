"""One LISTEN connection per node process, shared by every channel's consumer.

The coordination wake-ups, the teams wake-ups, the A2A task watch and the
federation watch each LISTEN on their own channel. Instead of a connection
each, a node process runs one ``PostgresListener``: each consumer subscribes
with its channel, its notice callback and its ``connected`` callback (what it
does after LISTEN took effect: wake every local wait, re-read everything),
and the listener keeps one connection LISTENing on every subscribed channel.

After every (re)connect, and when a consumer subscribes while the connection
is up, that consumer's ``connected`` runs once LISTEN is in effect, so
whatever committed before was never announced to it is caught up exactly as
with a connection of its own. ``disconnected`` runs when the connection is
lost (consumers clear their ``listening`` flag).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

#: asyncpg's notice callback: (connection, server pid, channel, payload).
NoticeCallback = Callable[[Any, int, str, str], None]


@dataclass(eq=False)
class Subscription:
    """One consumer of one channel (see ``PostgresListener.subscribe``)."""

    channel: str
    on_notice: NoticeCallback
    connected: Callable[[], None]
    disconnected: Callable[[], None] = field(default=lambda: None)


class PostgresListener:
    """One LISTEN connection multiplexing every subscribed channel (run until cancelled)."""

    def __init__(self, dsn: str, *, retry_s: float = 1.0) -> None:
        self._dsn = dsn
        self._retry_s = retry_s
        self._subscriptions: list[Subscription] = []
        self._conn: Any = None  # the asyncpg connection, while LISTENing
        self._listened: set[str] = set()  # channels LISTENed on the current connection
        self._lock = asyncio.Lock()  # connect/LISTEN and subscribe take turns
        #: How many times a LISTEN connection was established (for tests and logs).
        self.connections = 0

    def _dispatch(self, conn: object, pid: int, channel: str, payload: str) -> None:
        for sub in list(self._subscriptions):
            if sub.channel == channel:
                sub.on_notice(conn, pid, channel, payload)

    async def _listen(self, conn: Any, channel: str) -> None:
        if channel not in self._listened:
            await conn.add_listener(channel, self._dispatch)
            self._listened.add(channel)

    async def subscribe(self, sub: Subscription) -> None:
        """Add ``sub``; when the connection is up, LISTEN on its channel and call ``connected``.

        While the connection is down, ``connected`` runs once it is back.
        Cancellation while LISTEN is being issued leaves ``sub`` subscribed
        (the next reconnect LISTENs on its channel); ``unsubscribe`` removes it.
        """
        async with self._lock:
            self._subscriptions.append(sub)
            conn = self._conn
            if conn is None or conn.is_closed():
                return
            try:
                await self._listen(conn, sub.channel)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The connection broke: ``run`` reconnects and calls ``connected`` then.
                log.warning("LISTEN %s failed: %s; reconnecting", sub.channel, exc)
                conn.terminate()
                return
            sub.connected()

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub`` (its channel stays LISTENed until the next reconnect)."""
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection.

        Cancellation closes the connection and propagates. Connection
        failures are logged and retried every ``retry_s`` seconds; each
        successful (re)connect calls every subscriber's ``connected``.
        """
        while True:
            try:
                await self._listen_once()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("LISTEN connection failed: %s; retrying", exc)
            await asyncio.sleep(self._retry_s)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            async with self._lock:
                self._listened = set()
                for channel in dict.fromkeys(s.channel for s in self._subscriptions):
                    await self._listen(conn, channel)
                self._conn = conn
                self.connections += 1
                # Whatever committed before LISTEN took effect was never announced.
                for sub in list(self._subscriptions):
                    sub.connected()
            await lost.wait()
            log.warning("LISTEN connection lost; reconnecting")
        finally:
            was_up = self._conn is conn
            self._conn = None
            if was_up:
                for sub in list(self._subscriptions):
                    sub.disconnected()
            if not conn.is_closed():
                await asyncio.shield(conn.close())


async def follow(
    sub: Subscription, listener: PostgresListener | None, dsn: str | None, retry_s: float
) -> None:
    """Deliver ``sub``'s channel until cancelled, on ``listener`` or a private one for ``dsn``.

    A consumer given the process's shared listener subscribes to it; one given
    only a DSN (standalone use, tests) runs a listener of its own with the same
    reconnect and catch-up rules. Cancellation unsubscribes, closes a private
    listener's connection, calls ``sub.disconnected`` and propagates.
    """
    own: asyncio.Future[None] | None = None
    if listener is None:
        if dsn is None:
            raise ValueError("give a listener or a dsn")
        listener = PostgresListener(dsn, retry_s=retry_s)
        own = asyncio.ensure_future(listener.run())
    try:
        await listener.subscribe(sub)
        await (own if own is not None else asyncio.Future())  # until cancelled
    finally:
        listener.unsubscribe(sub)
        if own is not None:
            own.cancel()
            await asyncio.gather(own, return_exceptions=True)
        sub.disconnected()
