"""Broadcast: everyone may speak at any time, and every participant hears it."""

from __future__ import annotations

from coral.coordination.strategy import BaseStrategy, Decision, ThreadView
from coral.protocol.message import Message


class BroadcastStrategy(BaseStrategy):
    """The default: no turn-taking. Every message reaches every other participant's
    inbox anyway, so nobody is singled out with a turn event."""

    name = "broadcast"

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Allow every message; nobody in particular acts next."""
        return Decision()
