"""Contract-net: an initiator calls for proposals, participants bid, lowest price wins.

The initiator posts ``{"cfp": {"task": ..., "deadline_ms": <unix ms>}}``; every
other participant is notified and may bid once with ``{"bid": {"price": int,
...}}`` until the deadline. The award goes to the lowest price (ties: the
earliest bid) as a node event ``{"award": {"winner", "price"}}``. Time is the
view's ``now_ms`` (the node's clock, injected), never the sender's claim. The
auction resolves when everyone has bid, at a ``tick`` after the deadline, or
on the first non-bid message after it. Options: ``{"initiator": did}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from coral.coordination.errors import InvalidStrategyOptions
from coral.coordination.model import Thread
from coral.coordination.strategy import (
    BaseStrategy,
    Decision,
    EventHook,
    SystemEvent,
    ThreadView,
    data_with_key,
)
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage
from coral.protocol.message import Message

AWARD = "award"
NO_AWARD = "no_award"
MAX_PRICE = 2**53 - 1


@dataclass(frozen=True, slots=True)
class Award:
    """The outcome of one auction; ``cfp_message_id`` names it uniquely (an idempotency key)."""

    thread_id: str
    round: int
    cfp_message_id: str
    initiator: str
    winner: str
    price: int
    bid_message_id: str
    task: Any


#: The seam the ledger plugs into: reserve payment for an award before it is recorded.
#: Raising a CoralError refuses the operation that triggered the award (nothing is
#: written); the returned mapping is merged into the award event's data.
AwardHook = Callable[[Thread, Award], Awaitable[Mapping[str, Any] | None]]


def award_hook(on_award: AwardHook) -> EventHook:
    """Adapt ``on_award`` to the service's ``event_hooks={"award": ...}`` parameter."""

    async def hook(thread: Thread, event: SystemEvent) -> Mapping[str, Any] | None:
        return await on_award(thread, award_from_event(thread.id, event.data))

    return hook


def award_from_event(thread_id: str, data: Mapping[str, Any]) -> Award:
    """Rebuild the ``Award`` that an award event's data describes."""
    award = data["award"]
    return Award(
        thread_id=thread_id,
        round=int(data["round"]),
        cfp_message_id=str(data["cfp_message_id"]),
        initiator=str(data["initiator"]),
        winner=str(award["winner"]),
        price=int(award["price"]),
        bid_message_id=str(award["bid_message_id"]),
        task=data.get("task"),
    )


class ContractNetStrategy(BaseStrategy):
    """Call for proposals, sealed-until-deadline bids, award to the cheapest bid."""

    name = "contract_net"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Accept an optional ``initiator`` agent id."""
        unknown = set(options) - {"initiator"}
        if unknown:
            raise InvalidStrategyOptions(f"unknown contract_net options: {sorted(unknown)}")
        initiator = options.get("initiator")
        if initiator is not None and not isinstance(initiator, str):
            raise InvalidStrategyOptions("initiator is an agent id")
        return {"initiator": initiator} if initiator else {}

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Check the initiator is a participant and give it the first turn."""
        initiator = _initiator(view)
        if initiator not in view.participants:
            return Decision.refuse(
                InvalidStrategyOptions(f"initiator {initiator} is not in the thread")
            )
        return Decision(next_agents=(initiator,), state={"phase": "idle", "round": 1, "bids": []})

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Handle calls for proposals and bids; resolve an auction whose deadline passed."""
        bid = data_with_key(message, "bid")
        if _deadline_passed(view):
            if bid is not None:
                return Decision.refuse(Conflict("bidding has closed", reason="bidding_closed"))
            resolved = _resolve(view)
            after = self.on_message(_with_state(view, resolved.state), message)
            if not after.allowed:
                return after
            return Decision(
                next_agents=after.next_agents or resolved.next_agents,
                events=resolved.events + after.events,
                round_ended=True,
                state=after.state if after.state is not None else resolved.state,
                wake_at_ms=after.wake_at_ms,
            )
        cfp = data_with_key(message, "cfp")
        if cfp is not None:
            return _on_cfp(view, message, cfp)
        if bid is not None:
            return _on_bid(view, message, bid)
        return Decision(wake_at_ms=_deadline(view))

    def on_tick(self, view: ThreadView) -> Decision:
        """Resolve the auction once its deadline has passed."""
        if _deadline_passed(view):
            return _resolve(view)
        return Decision(wake_at_ms=_deadline(view))


def _on_cfp(view: ThreadView, message: Message, cfp: Any) -> Decision:
    if message.sender != _initiator(view):
        return Decision.refuse(
            Forbidden("only the initiator calls for proposals", reason="not_initiator")
        )
    if view.state.get("phase") == "bidding":
        return Decision.refuse(Conflict("an auction is already open", reason="auction_in_progress"))
    if not isinstance(cfp, Mapping) or "task" not in cfp:
        return Decision.refuse(
            InvalidMessage("a cfp is an object with a task", reason="invalid_cfp")
        )
    deadline = cfp.get("deadline_ms")
    if not isinstance(deadline, int) or isinstance(deadline, bool):
        deadline = None
    if deadline is None or not view.now_ms < deadline <= MAX_PRICE:
        return Decision.refuse(
            InvalidMessage("cfp.deadline_ms is a future Unix time in ms", reason="invalid_cfp")
        )
    state = {
        "phase": "bidding",
        "round": view.state.get("round", 1),
        "cfp": {"task": cfp["task"], "deadline_ms": deadline},
        "cfp_message_id": message.id,
        "bids": [],
    }
    return Decision(next_agents=_bidders(view), state=state, wake_at_ms=deadline)


def _on_bid(view: ThreadView, message: Message, bid: Any) -> Decision:
    if view.state.get("phase") != "bidding":
        return Decision.refuse(Conflict("no call for proposals is open", reason="no_open_cfp"))
    if message.sender == _initiator(view):
        return Decision.refuse(Forbidden("the initiator cannot bid", reason="initiator_cannot_bid"))
    if not isinstance(bid, Mapping) or not _is_int(bid.get("price")):
        return Decision.refuse(InvalidMessage("a bid has an integer price", reason="invalid_bid"))
    if not 0 <= bid["price"] <= MAX_PRICE:
        return Decision.refuse(InvalidMessage("a bid price is 0 or more", reason="invalid_bid"))
    bids = list(view.state.get("bids", []))
    if any(b["bidder"] == message.sender for b in bids):
        return Decision.refuse(Conflict("this agent already bid", reason="duplicate_bid"))
    bids.append({"bidder": message.sender, "price": bid["price"], "message_id": message.id})
    state = {**view.state, "bids": bids}
    if {b["bidder"] for b in bids} >= set(_bidders(view)):
        return _resolve(_with_state(view, state))
    return Decision(state=state, wake_at_ms=_deadline(view))


def _resolve(view: ThreadView) -> Decision:
    """Award the open auction to the lowest bid (earliest on ties)."""
    state = view.state
    round_number = int(state.get("round", 1))
    common = {
        "round": round_number,
        "cfp_message_id": state.get("cfp_message_id"),
        "initiator": _initiator(view),
        "task": state.get("cfp", {}).get("task"),
    }
    idle = {"phase": "idle", "round": round_number + 1, "bids": []}
    bids = list(state.get("bids", []))
    if not bids:
        event = SystemEvent(NO_AWARD, {**common, "reason": "no_bids"})
        return Decision(
            next_agents=(_initiator(view),), events=(event,), round_ended=True, state=idle
        )
    # min() keeps the first of equal prices, and bids are stored in arrival order.
    best = min(bids, key=lambda b: b["price"])
    award = {"winner": best["bidder"], "price": best["price"], "bid_message_id": best["message_id"]}
    event = SystemEvent(AWARD, {**common, "award": award}, mentions=(best["bidder"],))
    return Decision(events=(event,), round_ended=True, state=idle)


def _initiator(view: ThreadView) -> str:
    return str(view.options.get("initiator") or view.creator)


def _bidders(view: ThreadView) -> tuple[str, ...]:
    initiator = _initiator(view)
    return tuple(p for p in view.participants if p != initiator)


def _deadline(view: ThreadView) -> int | None:
    if view.state.get("phase") != "bidding":
        return None
    return int(view.state["cfp"]["deadline_ms"])


def _deadline_passed(view: ThreadView) -> bool:
    deadline = _deadline(view)
    return deadline is not None and view.now_ms >= deadline


def _with_state(view: ThreadView, state: Mapping[str, Any] | None) -> ThreadView:
    return ThreadView(
        thread_id=view.thread_id,
        creator=view.creator,
        participants=view.participants,
        options=view.options,
        state=state if state is not None else view.state,
        now_ms=view.now_ms,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
