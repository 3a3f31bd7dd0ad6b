"""Majority vote: a participant proposes, the others vote yes or no.

A proposal is a data part ``{"proposal": {...}}``; the voters are the
participants at that moment (the proposer included). Each votes once with
``{"vote": "yes"|"no"}``. A ``vote_result`` event ends the round as soon as a
strict majority is reached either way, or when everyone has voted (a tie is
``rejected``). One proposal is open at a time.
"""

from __future__ import annotations

from typing import Any

from coral.coordination.strategy import (
    BaseStrategy,
    Decision,
    SystemEvent,
    ThreadView,
    data_with_key,
)
from coral.protocol.errors import Conflict, Forbidden, InvalidMessage
from coral.protocol.message import Message

VOTE_RESULT = "vote_result"
CHOICES = ("yes", "no")


class MajorityVoteStrategy(BaseStrategy):
    """Proposals decided by a strict majority of the participants at proposal time."""

    name = "majority_vote"

    def on_thread_created(self, view: ThreadView) -> Decision:
        """Start with no open proposal."""
        return Decision(state={"round": 1, "open": False})

    def on_message(self, view: ThreadView, message: Message) -> Decision:
        """Open proposals, count votes, announce the outcome."""
        proposal = data_with_key(message, "proposal")
        if proposal is not None:
            return _on_proposal(view, message, proposal)
        vote = data_with_key(message, "vote")
        if vote is not None:
            return _on_vote(view, message, vote)
        return Decision()


def _on_proposal(view: ThreadView, message: Message, proposal: Any) -> Decision:
    if view.state.get("open"):
        return Decision.refuse(Conflict("a proposal is already open", reason="proposal_open"))
    if not isinstance(proposal, dict):
        return Decision.refuse(InvalidMessage("a proposal is an object", reason="invalid_proposal"))
    state = {
        "round": view.state.get("round", 1),
        "open": True,
        "proposal": proposal,
        "proposal_message_id": message.id,
        "proposer": message.sender,
        "voters": list(view.participants),
        "votes": {},
    }
    others = tuple(p for p in view.participants if p != message.sender)
    return Decision(next_agents=others, state=state)


def _on_vote(view: ThreadView, message: Message, vote: Any) -> Decision:
    state = view.state
    if not state.get("open"):
        return Decision.refuse(Conflict("no proposal is open", reason="no_open_proposal"))
    if vote not in CHOICES:
        return Decision.refuse(InvalidMessage('a vote is "yes" or "no"', reason="invalid_vote"))
    voters: list[str] = list(state["voters"])
    if message.sender not in voters:
        return Decision.refuse(Forbidden("joined after the proposal", reason="not_a_voter"))
    votes: dict[str, str] = dict(state["votes"])
    if message.sender in votes:
        return Decision.refuse(Conflict("this agent already voted", reason="already_voted"))
    votes[message.sender] = vote
    yes = sum(1 for v in votes.values() if v == "yes")
    no = len(votes) - yes
    majority_reached = 2 * yes > len(voters) or 2 * no > len(voters)
    if not majority_reached and len(votes) < len(voters):
        return Decision(state={**state, "votes": votes})
    outcome = "passed" if 2 * yes > len(voters) else "rejected"
    result = SystemEvent(
        VOTE_RESULT,
        {
            "round": state["round"],
            "proposal_message_id": state["proposal_message_id"],
            "proposal": state["proposal"],
            "outcome": outcome,
            "yes": yes,
            "no": no,
            "voters": len(voters),
        },
    )
    return Decision(
        next_agents=(state["proposer"],),
        events=(result,),
        round_ended=True,
        state={"round": int(state["round"]) + 1, "open": False},
    )
