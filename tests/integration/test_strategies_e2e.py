"""Every shipped strategy, and a third-party one, end to end through a real node."""

from __future__ import annotations

import textwrap

import pytest

from coral.coordination.model import HistoryPage
from coral.protocol.identity import Identity
from coral_sdk import AgentManifest, CoralApiError, CoralClient


async def team(node, *names: str) -> list[CoralClient]:
    clients = []
    for name in names:
        client = CoralClient(node.http, Identity.generate())
        await client.register(AgentManifest(name=name))
        clients.append(client)
    return clients


async def close_all(clients: list[CoralClient]) -> None:
    for c in clients:
        await c.close()


def events(page: HistoryPage, name: str) -> list[dict]:
    out = []
    for e in page.entries:
        if e.message.kind == f"coral.{name}":
            out.append(e.message.data()[0])
    return out


async def test_round_robin_refuses_out_of_turn_and_notifies_the_next(node):
    a, b, c = await team(node, "a", "b", "c")
    try:
        tid = (await a.create_thread("rr", [b.did, c.did], strategy="round_robin")).id
        await a.send(tid, "a speaks")
        with pytest.raises(CoralApiError) as info:
            await c.send(tid, "c jumps in")
        assert info.value.reason == "out_of_turn"
        turn = await b.wait("mention", timeout_ms=5000)
        assert any(e.entry.message.kind == "coral.turn" for e in turn.entries)
        await b.send(tid, "b speaks")
        await c.send(tid, "c speaks")
        page = await a.history(tid)
        assert events(page, "round_complete")
    finally:
        await close_all([a, b, c])


async def test_planner_led_collects_results_for_the_planner(node):
    planner, w1, w2 = await team(node, "planner", "w1", "w2")
    try:
        tid = (await planner.create_thread("plan", [w1.did, w2.did], strategy="planner")).id
        plan = [
            {"task_id": "t1", "assignee": w1.did, "instruction": "add 2+2"},
            {"task_id": "t2", "assignee": w2.did, "instruction": "capital of France"},
        ]
        await planner.send(tid, "plan", data={"plan": plan})
        got = await w1.wait("mention", timeout_ms=5000)
        assert got.entries
        await w1.send(tid, data={"task_id": "t1", "result": "4"})
        await w2.send(tid, data={"task_id": "t2", "result": "Paris"})
        done = events(await planner.history(tid), "plan_complete")
        assert len(done) == 1, done
        got = sorted((r["task_id"], r["assignee"], r["result"]) for r in done[0]["results"])
        assert got == [("t1", w1.did, "4"), ("t2", w2.did, "Paris")]
    finally:
        await close_all([planner, w1, w2])


async def test_contract_net_awards_the_lowest_bid(node):
    boss, x, y = await team(node, "boss", "x", "y")
    try:
        tid = (await boss.create_thread("cn", [x.did, y.did], strategy="contract_net")).id
        from coral.protocol.message import now_ms

        await boss.send(
            tid, data={"cfp": {"task": "solve sudoku", "deadline_ms": now_ms() + 60_000}}
        )
        await x.send(tid, data={"bid": {"price": 30}})
        await y.send(tid, data={"bid": {"price": 20}})
        awards = events(await boss.history(tid), "award")
        assert (
            awards and awards[0]["award"]["winner"] == y.did and awards[0]["award"]["price"] == 20
        )
    finally:
        await close_all([boss, x, y])


async def test_majority_vote_reports_the_result(node):
    a, b, c = await team(node, "a", "b", "c")
    try:
        tid = (await a.create_thread("vote", [b.did, c.did], strategy="majority_vote")).id
        await a.send(tid, data={"proposal": {"adopt": "plan B"}})
        await b.send(tid, data={"vote": "yes"})
        await c.send(tid, data={"vote": "yes"})
        results = events(await a.history(tid), "vote_result")
        assert len(results) == 1
        assert (results[0]["outcome"], results[0]["yes"], results[0]["no"]) == ("passed", 2, 0)
    finally:
        await close_all([a, b, c])


async def test_unknown_strategy_is_refused(node):
    (a,) = await team(node, "a")
    try:
        with pytest.raises(CoralApiError) as info:
            await a.create_thread("x", [], strategy="no_such_strategy")
        assert info.value.reason == "unknown_strategy"
    finally:
        await a.close()


@pytest.fixture
def third_party_path(tmp_path):
    """A tiny installed distribution declaring a strategy in coral.strategies."""
    root = tmp_path / "site"
    pkg = root / "quiet_strategy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        textwrap.dedent('''
        from coral.coordination.strategy import BaseStrategy, Decision
        from coral.protocol.errors import Forbidden

        class QuietStrategy(BaseStrategy):
            """Only the creator may speak."""
            name = "quiet"

            def on_message(self, view, message):
                if message.sender != view.creator:
                    raise Forbidden("only the creator speaks here", reason="quiet_please")
                return Decision()
    ''')
    )
    dist = root / "quiet_strategy-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: quiet-strategy\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[coral.strategies]\nquiet = quiet_strategy:QuietStrategy\n"
    )
    return root


async def test_third_party_strategy_loads_from_an_entry_point(node_factory, third_party_path):
    import os

    env_path = os.pathsep.join([str(third_party_path), os.environ.get("PYTHONPATH", "")])
    node = node_factory("tp", PYTHONPATH=env_path)
    boss, other = await team(node, "boss", "other")
    try:
        tid = (await boss.create_thread("q", [other.did], strategy="quiet")).id
        await boss.send(tid, "only me")
        with pytest.raises(CoralApiError) as info:
            await other.send(tid, "may I?")
        assert info.value.reason == "quiet_please"
    finally:
        await close_all([boss, other])
