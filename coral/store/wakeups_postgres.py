"""Wake-ups across node processes sharing one PostgreSQL database (LISTEN/NOTIFY).

Every coordination write that grows inboxes sends, inside its transaction, a
notice on the ``coordination`` channel naming those agents and the process
that wrote (PostgreSQL delivers it only once the write commits). Each
process runs one ``PostgresWakeups`` task that LISTENs (on a connection of
its own, or on the process's shared ``PostgresListener``) and wakes its
local waits for the named agents; they then read their inbox from their
cursor. Notices are hints, never data: after any
(re)connect every local wait is woken to catch up by cursor, so a notice lost
while the connection was down loses nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence

from coral.store.listen_postgres import PostgresListener, Subscription, follow

#: The NOTIFY channel of coordination writes.
CHANNEL = "coordination"
#: PostgreSQL refuses payloads of 8000 bytes or more; past this, say "everyone".
_MAX_PAYLOAD = 7900
_EVERYONE = "*"


def wake_payload(writer: str, agents: Sequence[str]) -> str:
    """The notice text: the writing process's token, then one agent per line."""
    text = "\n".join([writer, *agents])
    return text if len(text.encode()) <= _MAX_PAYLOAD else f"{writer}\n{_EVERYONE}"


def read_payload(payload: str) -> tuple[str, list[str] | None]:
    """(writer, agents) from a notice; agents None means "wake everyone"."""
    writer, *agents = payload.split("\n")
    return writer, None if agents == [_EVERYONE] else agents


class PostgresWakeups:
    """LISTEN for notices on ``channel`` and wake this process's waits (run until cancelled).

    The coordination channel names agents; other channels name what their
    waits wait on (the ``teams`` channel names team ids), in the same payload.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        own_writer: str,
        wake: Callable[[Iterable[str]], None],
        wake_all: Callable[[], None],
        retry_s: float = 1.0,
        channel: str = CHANNEL,
        listener: PostgresListener | None = None,
    ) -> None:
        if (dsn is None) == (listener is None):
            raise ValueError("give exactly one of dsn and listener")
        self._dsn = dsn
        self._listener = listener
        self._channel = channel
        self._own_writer = own_writer
        self._wake = wake
        self._wake_all = wake_all
        self._retry_s = retry_s
        #: How many times a LISTEN connection was established (for tests and logs).
        self.connections = 0
        #: Set while a LISTEN connection is up (tests wait on it).
        self.listening = asyncio.Event()

    def _on_notice(self, conn: object, pid: int, channel: str, payload: str) -> None:
        writer, agents = read_payload(payload)
        if writer == self._own_writer:
            return  # this process's own writes already woke its waits, with the rows
        if agents is None:
            self._wake_all()
        else:
            self._wake(agents)

    def _connected(self) -> None:
        self.connections += 1
        self.listening.set()
        # Whatever committed before LISTEN took effect was never announced to us.
        self._wake_all()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection.

        Cancellation closes the connection (or leaves the shared listener) and
        propagates. Connection failures are logged and retried every
        ``retry_s`` seconds (by the shared listener, when given); each
        successful (re)connect wakes every local wait to catch up by cursor.
        """
        sub = Subscription(self._channel, self._on_notice, self._connected, self.listening.clear)
        await follow(sub, self._listener, self._dsn, self._retry_s)
