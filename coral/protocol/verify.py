"""The full inbound check a node applies to every message."""

from __future__ import annotations

from collections.abc import Callable

from coral.protocol._replay import ReplayGuard
from coral.protocol.limits import DEFAULT_LIMITS, Limits
from coral.protocol.message import Message, now_ms
from coral.protocol.signing import verify_message_signature


class MessageVerifier:
    """Signature, freshness and replay checks in the order that costs least first.

    The clock is injected so tests (and simulations) control time.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, clock: Callable[[], int] = now_ms) -> None:
        self.limits = limits
        self.guard = ReplayGuard(limits)
        self._clock = clock

    def verify(self, message: Message, *, check_replay: bool = True, remember: bool = True) -> None:
        """Raise a typed CoralError unless the message is signed, fresh and new.

        With ``check_replay`` an id seen before raises Replayed; with
        ``remember`` as well, the id is recorded, so a second call raises.
        Checks on behalf of a third party (the public verify routes) pass
        ``remember=False``: asking must not burn the sender's id.
        """
        now = self._clock()
        self.guard.check_time(message, now)
        verify_message_signature(message, max_bytes=self.limits.max_message_bytes)
        if check_replay and remember:
            self.guard.accept(message, now)
        elif check_replay:
            self.guard.check(message, now)
