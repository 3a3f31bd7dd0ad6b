"""Each built-in strategy as a pure function: views and messages in, decisions out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coral.coordination.errors import InvalidStrategyOptions, OutOfTurn
from coral.coordination.strategies.broadcast import BroadcastStrategy
from coral.coordination.strategies.contract_net import AWARD, ContractNetStrategy
from coral.coordination.strategies.planner import PlannerLedStrategy
from coral.coordination.strategies.round_robin import RoundRobinStrategy
from coral.coordination.strategies.vote import MajorityVoteStrategy
from coral.coordination.strategy import Decision, Strategy, SystemEvent, ThreadView
from coral.protocol.identity import Identity

from .conftest import START_MS, make_message

PEOPLE = [Identity.from_seed(bytes([80 + i]) * 32) for i in range(7)]
A, B, C, D = PEOPLE[:4]


def view(
    participants: list[Identity], state: Any = None, options: Any = None, now: int = START_MS
) -> ThreadView:
    return ThreadView(
        thread_id="t1",
        creator=participants[0].did,
        participants=tuple(p.did for p in participants),
        options=options or {},
        state=state or {},
        now_ms=now,
    )


def step(strategy: Strategy, v: ThreadView, sender: Identity, data: Any = None) -> Decision:
    return strategy.on_message(v, make_message(sender, "t1", data=data))


def advanced(v: ThreadView, decision: Decision) -> ThreadView:
    assert decision.allowed, decision.refusal
    state = decision.state if decision.state is not None else v.state
    return ThreadView(v.thread_id, v.creator, v.participants, v.options, state, v.now_ms)


def test_all_builtins_satisfy_the_protocol() -> None:
    for strategy in (
        BroadcastStrategy(),
        RoundRobinStrategy(),
        PlannerLedStrategy(),
        ContractNetStrategy(),
        MajorityVoteStrategy(),
    ):
        assert isinstance(strategy, Strategy)


def test_broadcast_allows_everyone_and_refuses_options() -> None:
    decision = step(BroadcastStrategy(), view([A, B]), B)
    assert decision.allowed and not decision.events
    with pytest.raises(InvalidStrategyOptions):
        BroadcastStrategy().validate_options({"order": []})


def test_round_robin_follows_custom_order_and_refuses_strangers_in_it() -> None:
    rr = RoundRobinStrategy()
    options = rr.validate_options({"order": [C.did, A.did]})
    created = rr.on_thread_created(view([A, B, C], options=options))
    assert created.next_agents == (C.did,)
    # B is not listed, so B speaks after the listed agents.
    v = advanced(view([A, B, C], options=options), created)
    for speaker, nxt in ((C, A), (A, B)):
        decision = step(rr, v, speaker)
        assert decision.next_agents == (nxt.did,)
        v = advanced(v, decision)
    refused = rr.on_thread_created(view([A, B], options={"order": [D.did]}))
    assert isinstance(refused.refusal, InvalidStrategyOptions)


def test_round_robin_skips_an_agent_who_left() -> None:
    rr = RoundRobinStrategy()
    v = view([A, B, C], state={"round": 1, "spoken": [A.did]})
    without_b = view([A, C], state=v.state)
    decision = step(rr, without_b, C)
    assert decision.round_ended and decision.next_agents == (A.did,)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(min_value=0, max_value=3), max_size=25))
def test_round_robin_only_the_expected_speaker_is_allowed(speakers: list[int]) -> None:
    rr = RoundRobinStrategy()
    people = PEOPLE[:4]
    v = advanced(view(people), rr.on_thread_created(view(people)))
    turn = 0
    for index in speakers:
        decision = step(rr, v, people[index])
        if index == turn % 4:
            assert decision.round_ended == (turn % 4 == 3)
            turn += 1
            v = advanced(v, decision)
        else:
            assert isinstance(decision.refusal, OutOfTurn)


def test_planner_validates_plans() -> None:
    planner = PlannerLedStrategy()
    v = advanced(view([A, B]), planner.on_thread_created(view([A, B])))
    bad_plans: list[Any] = [
        [],
        [{"task_id": "1", "assignee": C.did, "instruction": "x"}],
        [{"task_id": "1", "assignee": B.did}],
        [{"task_id": "1", "assignee": B.did, "instruction": "x"}] * 2,
        "do it",
    ]
    for plan in bad_plans:
        refusal = step(planner, v, A, {"plan": plan}).refusal
        assert refusal is not None and refusal.reason == "invalid_plan", plan
    refusal = step(planner, v, B, {"plan": [{"task_id": "1", "assignee": B.did}]}).refusal
    assert refusal is not None and refusal.reason == "not_planner"


def test_planner_refuses_a_second_plan_while_tasks_are_open() -> None:
    planner = PlannerLedStrategy()
    v = advanced(view([A, B]), planner.on_thread_created(view([A, B])))
    plan = {"plan": [{"task_id": "1", "assignee": B.did, "instruction": "x"}]}
    v = advanced(v, step(planner, v, A, plan))
    refusal = step(planner, v, A, plan).refusal
    assert refusal is not None and refusal.reason == "plan_in_progress"


def test_contract_net_rejects_past_deadlines_and_initiator_bids() -> None:
    cn = ContractNetStrategy()
    v = advanced(view([A, B, C]), cn.on_thread_created(view([A, B, C])))
    past = step(cn, v, A, {"cfp": {"task": "t", "deadline_ms": START_MS}}).refusal
    assert past is not None and past.reason == "invalid_cfp"
    early_bid = step(cn, v, B, {"bid": {"price": 3}}).refusal
    assert early_bid is not None and early_bid.reason == "no_open_cfp"
    v = advanced(v, step(cn, v, A, {"cfp": {"task": "t", "deadline_ms": START_MS + 10}}))
    own = step(cn, v, A, {"bid": {"price": 1}}).refusal
    assert own is not None and own.reason == "initiator_cannot_bid"
    for bad in ({"price": -1}, {"price": 1.5}, {"price": True}, "cheap"):
        refusal = step(cn, v, B, {"bid": bad}).refusal
        assert refusal is not None and refusal.reason == "invalid_bid"


@settings(deadline=None, max_examples=60)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=5))
def test_contract_net_awards_lowest_price_earliest_on_ties(prices: list[int]) -> None:
    cn = ContractNetStrategy()
    people = PEOPLE[: len(prices) + 1]
    v = advanced(view(people), cn.on_thread_created(view(people)))
    v = advanced(v, step(cn, v, A, {"cfp": {"task": "t", "deadline_ms": START_MS + 99}}))
    decision = Decision()
    for bidder, price in zip(people[1:], prices, strict=True):
        decision = step(cn, v, bidder, {"bid": {"price": price}})
        v = advanced(v, decision)
    # Everyone bid, so the auction resolved on the last bid.
    assert decision.round_ended
    (award,) = [e for e in decision.events if e.name == AWARD]
    best = prices.index(min(prices))
    assert award.data["award"]["winner"] == people[1 + best].did
    assert award.data["award"]["price"] == min(prices)
    assert award.mentions == (people[1 + best].did,)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.booleans(), min_size=1, max_size=7))
def test_vote_result_is_a_strict_majority_announced_once(ballots: list[bool]) -> None:
    mv = MajorityVoteStrategy()
    people = PEOPLE[: len(ballots)]
    v = advanced(view(people), mv.on_thread_created(view(people)))
    v = advanced(v, step(mv, v, A, {"proposal": {"ship": True}}))
    results: list[SystemEvent] = []
    for voter, yes in zip(people, ballots, strict=True):
        decision = step(mv, v, voter, {"vote": "yes" if yes else "no"})
        if not decision.allowed:
            assert decision.refusal is not None
            assert decision.refusal.reason == "no_open_proposal"
            continue
        results.extend(decision.events)
        v = advanced(v, decision)
    assert len(results) == 1
    counted = results[0].data
    assert counted["yes"] + counted["no"] <= len(ballots)
    n = len(ballots)
    passed = 2 * counted["yes"] > n
    assert counted["outcome"] == ("passed" if passed else "rejected")
    # The announcement came exactly when a majority became certain (or all voted).
    votes_cast = counted["yes"] + counted["no"]
    assert votes_cast == n or 2 * counted["yes"] > n or 2 * counted["no"] > n


def test_vote_refuses_double_votes_and_late_joiners() -> None:
    mv = MajorityVoteStrategy()
    v = advanced(view([A, B, C]), mv.on_thread_created(view([A, B, C])))
    v = advanced(v, step(mv, v, A, {"proposal": {"x": 1}}))
    v = advanced(v, step(mv, v, B, {"vote": "yes"}))
    again = step(mv, v, B, {"vote": "no"}).refusal
    assert again is not None and again.reason == "already_voted"
    joined = ThreadView("t1", A.did, (A.did, B.did, C.did, D.did), {}, v.state, START_MS)
    late = step(mv, joined, D, {"vote": "yes"}).refusal
    assert late is not None and late.reason == "not_a_voter"
    bad = step(mv, v, C, {"vote": "maybe"}).refusal
    assert bad is not None and bad.reason == "invalid_vote"
