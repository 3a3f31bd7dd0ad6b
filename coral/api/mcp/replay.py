"""A bounded in-memory event store for MCP Streamable HTTP streams (2025-11-25 clients).

With an event store the mcp package opens every POST response stream with a
priming event (an event id, empty data and the ``retry`` hint) and lets a
client that lost the stream reconnect with ``Last-Event-ID`` to get what it
missed. The 2026-07-28 revision has no resumability; its clients re-issue the
request instead (the wait tools' cursor keeps that lossless).

The package hands the store only a stream id, which is the JSON-RPC request id
(``1``, ``2``, ...), so the same id recurs across sessions. Events are therefore
kept per owner (the MCP agent serving the request, set by the front door in a
context variable that the session's tasks inherit) and per incarnation (a
priming event starts one). A replay is refused when two incarnations of one
stream overlapped, so an event is never replayed to a stream it did not belong to.
Event ids are random, so one cannot be guessed. Memory is bounded by count and age.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from mcp.server.streamable_http import (
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCResponse

#: Who the current MCP request (and the session tasks it starts) serves: an agent's DID.
STREAM_OWNER: ContextVar[str] = ContextVar("coral_mcp_stream_owner", default="")

DEFAULT_MAX_EVENTS = 4096
DEFAULT_MAX_AGE_S = 300.0


@dataclass(eq=False)
class _Incarnation:
    owner: str
    stream: StreamId
    events: deque[EventId] = field(default_factory=deque)
    answered: bool = False
    ambiguous: bool = False


@dataclass(frozen=True)
class _Event:
    incarnation: _Incarnation
    message: JSONRPCMessage | None
    at: float


class ReplayBuffer(EventStore):
    """Recent stream events for ``Last-Event-ID`` replay; oldest dropped past the bounds."""

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._events: OrderedDict[EventId, _Event] = OrderedDict()
        self._latest: dict[tuple[str, StreamId], _Incarnation] = {}

    @property
    def size(self) -> int:
        """Events held now (no ``__len__``: the mcp package tests the store for truth)."""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        """Record one event (``None`` = the priming event that opens a stream)."""
        key = (STREAM_OWNER.get(), stream_id)
        current = self._latest.get(key)
        if message is None or current is None or current.answered:
            # A priming event opens a stream; an answered stream gets no more events.
            fresh = _Incarnation(*key)
            if current is not None and not current.answered:
                current.ambiguous = fresh.ambiguous = True
            self._latest[key] = current = fresh
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            current.answered = True
        event_id = secrets.token_urlsafe(18)
        current.events.append(event_id)
        now = self._clock()
        self._events[event_id] = _Event(current, message, now)
        self._evict(now)
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send the events of ``last_event_id``'s stream that came after it.

        Returns None (nothing sent) for an unknown or expired id, an id of
        another agent's stream, or a stream whose incarnations overlapped.
        """
        self._evict(self._clock())
        event = self._events.get(last_event_id)
        if event is None:
            return None
        incarnation = event.incarnation
        if incarnation.ambiguous or incarnation.owner != STREAM_OWNER.get():
            return None
        later = list(incarnation.events)
        for event_id in later[later.index(last_event_id) + 1 :]:
            stored = self._events.get(event_id)
            if stored is not None and stored.message is not None:
                await send_callback(EventMessage(stored.message, event_id))
        return incarnation.stream

    def _evict(self, now: float) -> None:
        while self._events:
            oldest_id, oldest = next(iter(self._events.items()))
            if len(self._events) <= self.max_events and now - oldest.at <= self.max_age_s:
                return
            del self._events[oldest_id]
            incarnation = oldest.incarnation
            if incarnation.events and incarnation.events[0] == oldest_id:
                incarnation.events.popleft()
            key = (incarnation.owner, incarnation.stream)
            if not incarnation.events and self._latest.get(key) is incarnation:
                del self._latest[key]
