"""Round-robin: a fixed speaking order; each participant speaks once per round.

Options: ``{"order": [did, ...]}`` (default: participants in join order, the
creator first). Agents who join later speak after the listed ones; agents who
leave are skipped. Out-of-turn messages are refused with ``out_of_turn``.
"""

from __future__ import annotations

from typing import Any

from coral.coordination.errors import InvalidStrategyOptions, OutOfTurn
from coral.coordination.strategy import BaseStrategy, Decision, SystemEvent, ThreadView
from coral.protocol.message import Message

ROUND_COMPLETE = "round_complete"


class RoundRobinStrategy(BaseStrategy):
    """Participants take turns in a fixed order; the next speaker is notified."""

    name = "round_robin"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Accept an optional ``order``: a list of distinct agent ids."""
        unknown = set(options) - {"order"}
        if unknown:
            raise InvalidStrategyOptions(f"unknown round_robin options: {sorted(unknown)}")
        order = options.get("order", [])
        if not isinstance(order, list) or not all(isinstance(a, str) for a in order):
            raise InvalidStrategyOptions("order is a list of agent ids")
        if len(set(order)) != len(order):
            raise InvalidStrategyOptions("order names an agent twice")
        return {"order": order} if order else {}

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Check the order names participants and give the first speaker the turn."""
        strangers = [a for a in view.options.get("order", []) if a not in view.participants]
        if strangers:
            return Decision.refuse(
                InvalidStrategyOptions(f"order names non-participants: {strangers}")
            )
        order = _speaking_order(view)
        return Decision(next_agents=order[:1], state={"round": 1, "spoken": []})

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Allow only the current speaker; end the round when everyone has spoken."""
        order = _speaking_order(view)
        round_number = int(view.state.get("round", 1))
        spoken = [a for a in view.state.get("spoken", []) if a in order]
        waiting = [a for a in order if a not in spoken]
        if not waiting:  # everyone left in this round has spoken (others left the thread)
            spoken, waiting = [], list(order)
        if message.sender != waiting[0]:
            return Decision.refuse(OutOfTurn(f"it is {waiting[0]}'s turn to speak"))
        spoken.append(message.sender)
        if len(waiting) > 1:
            return Decision(
                next_agents=(waiting[1],), state={"round": round_number, "spoken": spoken}
            )
        completed = SystemEvent(ROUND_COMPLETE, {"round": round_number})
        return Decision(
            next_agents=order[:1],
            events=(completed,),
            round_ended=True,
            state={"round": round_number + 1, "spoken": []},
        )


def _speaking_order(view: ThreadView) -> tuple[str, ...]:
    listed = [a for a in view.options.get("order", []) if a in view.participants]
    return (*listed, *(p for p in view.participants if p not in listed))
