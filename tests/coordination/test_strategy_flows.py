"""Each built-in strategy end to end through the service and a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from coral.coordination.errors import OutOfTurn
from coral.coordination.model import Thread
from coral.coordination.service import CoordinationService
from coral.coordination.strategies.contract_net import Award, award_hook
from coral.protocol.errors import Conflict, CoralError, ResourceExhausted
from coral.protocol.identity import Identity

from .conftest import START_MS, FakeClock, events_named, open_service, post


async def turns(service: CoordinationService, reader: Identity, thread: Thread) -> list[list[str]]:
    page = await service.history(reader.did, thread.id, limit=1000)
    return [e["agents"] for e in events_named(page.entries, "turn")]


async def test_broadcast_lets_everyone_speak_and_everyone_hear(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did, c.did])
    starts = {x.did: await service.inbox_cursor(x.did) for x in (a, b, c)}
    for speaker in (c, a, b):
        await post(service, speaker, thread.id, text=f"I am {speaker.did[-4:]}")
    for listener in (a, b, c):
        got = await service.wait(listener.did, after=starts[listener.did], timeout_ms=1)
        assert len(got.entries) == 2  # the two messages from the others
    assert await turns(service, a, thread) == []


async def test_round_robin_turns_refusals_and_rounds(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "debate", [b.did, c.did], strategy="round_robin")
    with pytest.raises(OutOfTurn) as caught:
        await post(service, b, thread.id)
    assert b.did not in caught.value.detail and a.did in caught.value.detail
    assert (await service.get_thread(a.did, thread.id)).last_seq == 2  # created + turn
    cursor = await service.inbox_cursor(b.did)
    await post(service, a, thread.id)
    told = await service.wait(b.did, "mention", after=cursor, timeout_ms=1)
    assert told.entries[0].entry.message.kind == "coral.turn"
    await post(service, b, thread.id)
    await post(service, c, thread.id)
    page = await service.history(a.did, thread.id)
    assert events_named(page.entries, "round_complete") == [{"event": "round_complete", "round": 1}]
    assert await turns(service, a, thread) == [[a.did], [b.did], [c.did], [a.did]]


async def test_round_robin_state_survives_restart(
    tmp_path: Path, clock: FakeClock, node_identity: Identity, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    db, service = await open_service(tmp_path / "n.db", clock, node_identity)
    thread = await service.create_thread(a.did, "debate", [b.did, c.did], strategy="round_robin")
    await post(service, a, thread.id)
    await db.close()
    db, service = await open_service(tmp_path / "n.db", clock, node_identity)
    try:
        with pytest.raises(OutOfTurn):
            await post(service, c, thread.id)
        await post(service, b, thread.id)
        await post(service, c, thread.id)
    finally:
        await db.close()


async def test_planner_led_flow(service: CoordinationService, agents: list[Identity]) -> None:
    planner, search, write = agents[:3]
    thread = await service.create_thread(
        planner.did, "report", [search.did, write.did], strategy="planner"
    )
    plan = [
        {"task_id": "s1", "assignee": search.did, "instruction": "find sources"},
        {"task_id": "w1", "assignee": write.did, "instruction": "draft"},
    ]
    await post(service, planner, thread.id, data={"plan": plan})
    assert (await turns(service, planner, thread))[-1] == [search.did, write.did]
    with pytest.raises(CoralError) as caught:
        await post(service, write, thread.id, data={"task_id": "s1", "result": "mine!"})
    assert caught.value.reason == "not_assignee"
    cursor = await service.inbox_cursor(planner.did)
    await post(service, search, thread.id, data={"task_id": "s1", "result": ["a", "b"]})
    await post(service, write, thread.id, text="working on it")  # chat passes through
    with pytest.raises(CoralError) as unknown:
        await post(service, write, thread.id, data={"task_id": "zz", "result": 1})
    assert unknown.value.reason == "task_not_found"
    await post(service, write, thread.id, data={"task_id": "w1", "result": "draft v1"})
    told = await service.wait(planner.did, "mention", after=cursor, timeout_ms=1)
    assert [e.entry.message.kind for e in told.entries] == ["coral.turn"]
    page = await service.history(planner.did, thread.id)
    (done,) = events_named(page.entries, "plan_complete")
    assert done["results"] == [
        {"task_id": "s1", "assignee": search.did, "result": ["a", "b"]},
        {"task_id": "w1", "assignee": write.did, "result": "draft v1"},
    ]
    # A new plan may start once the round ended.
    await post(service, planner, thread.id, data={"plan": plan[:1]})


async def test_contract_net_awards_when_everyone_has_bid(
    service: CoordinationService, agents: list[Identity], clock: FakeClock
) -> None:
    boss, cheap, dear = agents[:3]
    thread = await service.create_thread(
        boss.did, "auction", [cheap.did, dear.did], strategy="contract_net"
    )
    cfp = {"cfp": {"task": "translate", "deadline_ms": clock.now + 10_000}}
    await post(service, boss, thread.id, data=cfp)
    await post(service, dear, thread.id, data={"bid": {"price": 90, "eta_s": 5}})
    with pytest.raises(Conflict) as duplicate:
        await post(service, dear, thread.id, data={"bid": {"price": 10}})
    assert duplicate.value.reason == "duplicate_bid"
    await post(service, cheap, thread.id, data={"bid": {"price": 40}})
    page = await service.history(boss.did, thread.id)
    (award,) = events_named(page.entries, "award")
    assert award["award"]["winner"] == cheap.did and award["award"]["price"] == 40
    winner_inbox = await service.wait(cheap.did, "mention", timeout_ms=1)
    assert winner_inbox.entries[-1].entry.message.kind == "coral.award"
    assert (await service.get_thread(boss.did, thread.id)).wake_at is None


async def test_contract_net_deadline_resolves_on_tick(
    service: CoordinationService, agents: list[Identity], clock: FakeClock
) -> None:
    boss, x, y = agents[:3]
    thread = await service.create_thread(
        boss.did, "auction", [x.did, y.did], strategy="contract_net"
    )
    await post(
        service, boss, thread.id, data={"cfp": {"task": "t", "deadline_ms": clock.now + 500}}
    )
    bid = await post(service, y, thread.id, data={"bid": {"price": 7}})
    assert await service.tick_due() == 0  # not due yet
    assert await service.tick(thread.id) == ()
    late_joiner = agents[3]
    await service.add_participant(boss.did, thread.id, late_joiner.did)
    assert (await service.get_thread(boss.did, thread.id)).wake_at == clock.now + 500
    clock.advance(500)
    with pytest.raises(Conflict) as late:
        await post(service, x, thread.id, data={"bid": {"price": 1}})
    assert late.value.reason == "bidding_closed"
    assert await service.tick_due() == 1
    page = await service.history(boss.did, thread.id)
    (award,) = events_named(page.entries, "award")
    assert award["award"] == {"winner": y.did, "price": 7, "bid_message_id": bid.message.id}
    assert await service.tick_due() == 0


async def test_contract_net_with_no_bids_reports_no_award(
    service: CoordinationService, agents: list[Identity], clock: FakeClock
) -> None:
    boss, x = agents[:2]
    thread = await service.create_thread(boss.did, "auction", [x.did], strategy="contract_net")
    await post(service, boss, thread.id, data={"cfp": {"task": "t", "deadline_ms": clock.now + 5}})
    clock.advance(10)
    # The initiator's next message first settles the expired auction.
    await post(service, boss, thread.id, data={"cfp": {"task": "t2", "deadline_ms": clock.now + 5}})
    page = await service.history(boss.did, thread.id)
    assert events_named(page.entries, "no_award")[0]["task"] == "t"
    state = (await service.get_thread(boss.did, thread.id)).strategy_state
    assert state["phase"] == "bidding" and state["cfp"]["task"] == "t2" and state["round"] == 2


async def test_award_hook_reserves_payment_before_the_award_is_written(
    tmp_path: Path, clock: FakeClock, node_identity: Identity, agents: list[Identity]
) -> None:
    reserved: list[Award] = []

    async def reserve(thread: Thread, award: Award) -> Mapping[str, Any] | None:
        if award.price > 100:
            raise ResourceExhausted("budget exceeded", reason="insufficient_funds")
        reserved.append(award)
        return {"escrow": {"transfer_id": f"award-{award.cfp_message_id}"}}

    db, service = await open_service(
        tmp_path / "n.db", clock, node_identity, event_hooks={"award": award_hook(reserve)}
    )
    try:
        boss, bidder = agents[:2]
        thread = await service.create_thread(
            boss.did, "auction", [bidder.did], strategy="contract_net"
        )
        cfp = await post(
            service, boss, thread.id, data={"cfp": {"task": "t", "deadline_ms": clock.now + 99}}
        )
        with pytest.raises(ResourceExhausted):
            await post(service, bidder, thread.id, data={"bid": {"price": 500}})
        assert (await service.get_thread(boss.did, thread.id)).strategy_state["bids"] == []
        await post(service, bidder, thread.id, data={"bid": {"price": 60}})
        assert [(r.winner, r.price, r.cfp_message_id) for r in reserved] == [
            (bidder.did, 60, cfp.message.id)
        ]
        page = await service.history(boss.did, thread.id)
        (award,) = events_named(page.entries, "award")
        assert award["escrow"] == {"transfer_id": f"award-{cfp.message.id}"}
    finally:
        await db.close()


async def test_majority_vote_flow(service: CoordinationService, agents: list[Identity]) -> None:
    a, b, c, d, e = agents[:5]
    thread = await service.create_thread(
        a.did, "vote", [b.did, c.did, d.did, e.did], strategy="majority_vote"
    )
    await post(service, a, thread.id, data={"proposal": {"adopt": "plan B"}})
    assert (await turns(service, a, thread))[-1] == [b.did, c.did, d.did, e.did]
    with pytest.raises(Conflict):
        await post(service, b, thread.id, data={"proposal": {"adopt": "plan C"}})
    for voter in (a, b):
        await post(service, voter, thread.id, data={"vote": "yes"})
    await post(service, c, thread.id, data={"vote": "no"})
    page = await service.history(a.did, thread.id)
    assert events_named(page.entries, "vote_result") == []
    await post(service, d, thread.id, data={"vote": "yes"})  # 3 of 5: majority
    page = await service.history(a.did, thread.id)
    (result,) = events_named(page.entries, "vote_result")
    assert (result["outcome"], result["yes"], result["no"], result["voters"]) == ("passed", 3, 1, 5)
    with pytest.raises(Conflict) as closed:
        await post(service, e, thread.id, data={"vote": "no"})
    assert closed.value.reason == "no_open_proposal"


async def test_strategy_options_are_validated_at_creation(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    with pytest.raises(CoralError) as caught:
        await service.create_thread(
            a.did, "x", [b.did], strategy="round_robin", strategy_options={"order": [c.did]}
        )
    assert caught.value.reason == "invalid_strategy_options"
    thread = await service.create_thread(
        a.did, "x", [b.did], strategy="round_robin", strategy_options={"order": [b.did, a.did]}
    )
    assert thread.strategy_options == {"order": [b.did, a.did]}
    assert await turns(service, a, thread) == [[b.did]]
    assert START_MS == thread.created_at


async def test_run_timers_settles_an_auction_at_its_deadline_without_polling(
    tmp_path: Path, node_identity: Identity, agents: list[Identity]
) -> None:
    def wall_clock() -> int:
        return time.time_ns() // 1_000_000

    db, service = await open_service(tmp_path / "n.db", wall_clock, node_identity)
    timers = asyncio.create_task(service.run_timers())
    try:
        boss, x, y = agents[:3]
        thread = await service.create_thread(
            boss.did, "auction", [x.did, y.did], strategy="contract_net"
        )
        deadline = wall_clock() + 150
        await post(service, boss, thread.id, data={"cfp": {"task": "t", "deadline_ms": deadline}})
        await post(service, x, thread.id, data={"bid": {"price": 3}})
        cursor = await service.inbox_cursor(x.did)
        # x waits for its award mention; only the timer task can produce it.
        got = await service.wait(x.did, "mention", after=cursor, timeout_ms=5000)
        assert got.entries[0].entry.message.kind == "coral.award"
        assert got.entries[0].entry.recorded_at >= deadline
    finally:
        timers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timers
        await db.close()
