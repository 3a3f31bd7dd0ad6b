"""The strategy interface: who may speak, who acts next, and what the node says.

A strategy is a pure object: it reads a ``ThreadView`` (with the time passed
in) and an incoming message, and returns a ``Decision``. Its state lives in the
decision, so the service can persist it as JSON and a restarted node carries on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from coral.coordination.errors import InvalidStrategyOptions
from coral.coordination.model import JsonObject, Thread
from coral.protocol.errors import CoralError
from coral.protocol.message import Message

EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True, slots=True)
class ThreadView:
    """What a strategy may see of a thread, at the time ``now_ms``."""

    thread_id: str
    creator: str
    participants: tuple[str, ...]
    options: JsonObject
    state: JsonObject
    now_ms: int

    @classmethod
    def of(cls, thread: Thread, now_ms: int) -> ThreadView:
        """The view of ``thread`` as a strategy sees it at ``now_ms``."""
        return cls(
            thread_id=thread.id,
            creator=thread.creator,
            participants=thread.participants,
            options=thread.strategy_options,
            state=thread.strategy_state,
            now_ms=now_ms,
        )


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """A node-authored event to append to the log (e.g. ``award``, ``vote_result``)."""

    name: str
    data: JsonObject = field(default_factory=dict)
    mentions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not EVENT_NAME.match(self.name):
            raise ValueError(f"bad system event name {self.name!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's answer to a thread event.

    ``refusal`` set means the message is refused with that error and nothing is
    written. Otherwise ``next_agents`` are notified (mentioned by a node
    ``turn`` event), ``events`` are appended, ``state`` (when not None) replaces
    the persisted strategy state, and ``wake_at_ms`` asks for a ``tick``.
    """

    refusal: CoralError | None = None
    next_agents: tuple[str, ...] = ()
    events: tuple[SystemEvent, ...] = ()
    round_ended: bool = False
    state: JsonObject | None = None
    wake_at_ms: int | None = None

    @property
    def allowed(self) -> bool:
        """True unless the strategy refused the message."""
        return self.refusal is None

    @classmethod
    def refuse(cls, error: CoralError) -> Decision:
        """A decision refusing the message with ``error``."""
        return cls(refusal=error)


#: Runs before a node event named in ``CoordinationService(event_hooks=...)`` is written;
#: a CoralError refuses the whole operation, a returned mapping joins the event's data.
EventHook = Callable[[Thread, SystemEvent], Awaitable[Mapping[str, Any] | None]]


@runtime_checkable
class Strategy(Protocol):
    """A coordination strategy; third parties register one by entry point."""

    name: str

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Return normalized options or raise InvalidStrategyOptions."""
        ...

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Decide the initial state and who acts first."""
        ...

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Decide whether ``message`` is allowed and what follows it."""
        ...


@runtime_checkable
class TimedStrategy(Strategy, Protocol):
    """A strategy that also reacts to time passing (deadlines, timeouts)."""

    def on_tick(self, view: ThreadView) -> Decision:
        """Called once the ``wake_at_ms`` of an earlier decision is due."""
        ...


class BaseStrategy:
    """Convenient defaults: no options, nothing to do at creation or on ticks."""

    name = "base"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Accept no options by default."""
        if options:
            raise InvalidStrategyOptions(f"strategy {self.name!r} takes no options")
        return {}

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Nothing happens when the thread is created."""
        return Decision()

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Allow every message."""
        return Decision()

    def on_tick(self, view: ThreadView) -> Decision:
        """Time passing changes nothing."""
        return Decision()


def data_with_key(message: Message, key: str) -> Any | None:
    """The value under ``key`` in the first data part that is an object holding it."""
    for payload in message.data():
        if isinstance(payload, Mapping) and key in payload:
            return payload[key]
    return None


def data_object_with_keys(message: Message, *keys: str) -> Mapping[str, Any] | None:
    """The first data part that is an object holding all of ``keys``."""
    for payload in message.data():
        if isinstance(payload, Mapping) and all(k in payload for k in keys):
            return payload
    return None
