"""Model agents against a real node process: TRM end to end, replicas, AgentFlow calling TRM.

No LLM service runs on these machines, so the AgentFlow test drives the loop with
a scripted OpenAI-compatible HTTP server started by the test (the one allowed
stand-in, at the edge of the world). Everything else is real: the node process,
signed messages over HTTP, the TRM agent with the shipped checkpoint, and the
AgentFlow engine, executor and ``CoralNetworkTool``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coral.protocol.identity import Identity
from coral.protocol.message import Message
from coral_sdk import AgentManifest, CoralClient
from coral_sdk.agent import Agent
from coral_sdk.agents.agentflow_agent import AgentFlowAgent
from coral_sdk.agents.echo_agent import EchoAgent
from coral_sdk.agents.opentslm_agent import SHIPPED_DIR, OpenTslmAgent
from coral_sdk.agents.trm_agent import TrmAgent
from coral_sdk.ledger import LedgerClient
from coral_sdk.model_agent import ReplicaShard
from coral_sdk.registry import load_manifest
from tests.sdk.models.agentflow.scripted_llm import ScriptedLLM

REGISTRY_ECHO = Path(__file__).resolve().parents[2] / "registry" / "echo.toml"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def sudoku_puzzles(count: int, seed: int = 3) -> list[dict[str, Any]]:
    from coral_sdk.models.trm.tasks import sudoku

    rng = np.random.default_rng(seed)
    return [
        {"task": "sudoku4", "grid": sudoku.generate_puzzle(4, 6, rng)[0].tolist()}
        for _ in range(count)
    ]


@asynccontextmanager
async def running(*agents: Agent) -> AsyncIterator[None]:
    """Run agents as tasks until registered; stop them on exit."""
    tasks = [asyncio.create_task(agent.run()) for agent in agents]
    try:
        for _ in range(200):
            if all(agent.record is not None for agent in agents):
                break
            for task in tasks:
                if task.done():
                    task.result()
            await asyncio.sleep(0.05)
        yield
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.gather(*tasks)


async def user(node: Any, name: str = "alice") -> CoralClient:
    client = CoralClient(node.http, Identity.generate())
    await client.register(AgentManifest(name=name))
    return client


async def replies(client: CoralClient, count: int, timeout_s: float = 60.0) -> list[Message]:
    """Wait for ``count`` mentions of ``client``; returns their messages."""
    got: list[Message] = []
    cursor = 0
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            page = await client.wait("mention", after=cursor, timeout_ms=10_000)
            got += [item.entry.message for item in page.entries]
            cursor = page.cursor
    return got


async def fund(node: Any, client: CoralClient, account: str, amount: int) -> None:
    """Operator funding (dev mode) over HTTP with the admin token."""
    token = (node.data_dir / "keys" / "admin.token").read_text().strip()
    async with client._http().post(
        node.http + "/v1/admin/ledger/issue",
        json={"account": account, "amount": amount},
        headers={"Authorization": f"Bearer {token}"},
    ) as resp:
        assert resp.status < 300, await resp.text()


def data_of(message: Message) -> Any:
    return message.data()[0]


def text_of(message: Message) -> str:
    return message.text()


async def test_trm_agent_solves_a_puzzle_sent_through_the_node(node: Any, tmp_path: Path) -> None:
    from coral_sdk.models.trm import SHIPPED_SUDOKU4

    options = {"device": "cpu", "checkpoint": str(SHIPPED_SUDOKU4)}
    trm = TrmAgent(node.http, key_file=tmp_path / "trm.key", options=options)
    alice = await user(node)
    [puzzle] = sudoku_puzzles(1)
    try:
        async with running(trm):
            record = await alice.get_agent("trm")
            assert record.manifest.name == "trm" and record.agent == trm.did
            thread = await alice.create_thread("sudoku", ["trm"])
            await alice.send(thread.id, data=puzzle, mentions=[trm.did])
            await alice.send(thread.id, data={"task": "sudoku4"}, mentions=[trm.did])
            answers = await replies(alice, 2)
    finally:
        await alice.close()
    by_kind = {"error" in data_of(m): m for m in answers}
    solved = data_of(by_kind[False])
    grid = np.array(solved["solution"])
    given = np.array(puzzle["grid"])
    assert grid.shape == (4, 4) and np.all(grid[given > 0] == given[given > 0])
    assert 1 <= solved["supervision_steps"] <= 4 and 0.0 <= solved["halt_confidence"] <= 1.0
    assert "supervision steps" in text_of(by_kind[False])
    assert data_of(by_kind[True]) == {
        "error": {"reason": "malformed_puzzle", "detail": "missing 'grid'"}
    }
    assert all(m.sender == trm.did and m.thread == thread.id for m in answers)


async def test_replicas_answer_every_request_exactly_once(node: Any, tmp_path: Path) -> None:
    key = tmp_path / "echo.key"
    replicas = [EchoAgent(node.http, key_file=key, replica=ReplicaShard(i, 3)) for i in range(3)]
    assert len({replica.did for replica in replicas}) == 1
    alice = await user(node)
    try:
        async with running(*replicas):
            thread = await alice.create_thread("load", ["echo"])
            for i in range(30):
                await alice.send(thread.id, f"request {i}", mentions=[replicas[0].did])
            answers = await replies(alice, 30)
            # Barrier: a replica's cursor passes an entry only once its handler has
            # finished (its reply, if any, posted). When every replica is past the
            # last request, every answer any of them would give has arrived.
            shared = await replicas[0].client.wait("mention", after=0, timeout_ms=1, limit=100)
            assert len(shared.entries) == 30
            last_request = shared.cursor
            async with asyncio.timeout(60):
                while any(replica.cursor < last_request for replica in replicas):
                    await asyncio.sleep(0.05)
            late = await alice.wait("mention", after=0, timeout_ms=1, limit=100)
    finally:
        await alice.close()
    echoed = sorted(data_of(m)["echo"] for m in answers)
    assert echoed == sorted(f"request {i}" for i in range(30))
    assert len(late.entries) == 30  # no second answer to anything
    shares = [sum(data_of(m)["replica"] == i for m in answers) for i in range(3)]
    assert all(share > 0 for share in shares) and sum(shares) == 30
    for replica in replicas:  # each replica saved its own cursor
        assert replica._cursor_path() is not None and replica._cursor_path().exists()


async def test_agentflow_agent_calls_the_trm_agent_as_a_tool(node: Any, tmp_path: Path) -> None:
    [puzzle] = sudoku_puzzles(1, seed=11)
    request = json.dumps(puzzle)
    llm = ScriptedLLM()
    llm.script = {
        "analysis": ["The user wants a 4x4 Sudoku solved; the trm agent solves those."],
        "planner": ["Context: the puzzle\nSub-Goal: solve it with trm\nTool Name: coral_agent"],
        "executor": [
            'Command:\n```python\nexecution = tool.execute(agent_name="trm", '
            f"request='{request}')\n```"
        ],
        "verifier": ["Conclusion: STOP"],
        "final": ["The trm agent returned the solved grid."],
        "direct": [lambda prompt: "solved: " + ("yes" if "halt_confidence" in prompt else "no")],
    }
    await llm.start()
    # TRM with its registry manifest: it charges 2 CRL per puzzle.
    from coral_sdk.models.trm import SHIPPED_SUDOKU4

    trm = TrmAgent(
        node.http,
        key_file=tmp_path / "trm.key",
        manifest=load_manifest("trm").agent_manifest(),
        options={"device": "cpu", "checkpoint": str(SHIPPED_SUDOKU4)},
    )
    flow = AgentFlowAgent(
        node.http,
        key_file=tmp_path / "flow.key",
        options={
            "base_url": llm.base_url,
            "model": "scripted",
            "tool_agents": "trm=solves 4x4 sudoku",
            "calculator": False,
            "max_steps": 2,
            "pay_tools": True,
            "max_tool_price": 5,
        },
    )
    alice = await user(node)
    try:
        async with running(trm, flow):
            await fund(node, alice, flow.did, 10)
            thread = await alice.create_thread("ask", ["agentflow"])
            await alice.send(thread.id, "Solve this sudoku: " + request, mentions=[flow.did])
            [answer] = await replies(alice, 1)
            balances = [
                (await LedgerClient(agent.client).balance()).balance for agent in (flow, trm)
            ]
    finally:
        await alice.close()
        await llm.close()
    assert balances == [8, 2]  # the tool call paid TRM's listed price through escrow
    [payment] = flow.network_tool.payments
    assert payment["agent"] == "trm" and payment["amount"] == 2 and payment["status"] == "posted"
    result = data_of(answer)
    assert answer.sender == flow.did
    assert result["answer"] == "solved: yes" and text_of(answer) == "solved: yes"
    assert result["stop_reason"] == "verifier_stop" and result["steps"] == 1
    [call] = result["tool_calls"]
    assert call["tool"] == "coral_agent"
    solved = json.loads(call["result"])
    assert np.array(solved["solution"]).shape == (4, 4)
    assert flow.network_tool.calls == 1 and len(flow.network_tool.threads) == 1
    assert solved["verified"] is True and trm.continuous.stats().items == 1


def opentslm_checkpoint(tmp_path: Path) -> Path:
    """The shipped checkpoint when present, else a tiny untrained one built here (fast)."""
    shipped = SHIPPED_DIR / "softprompt"  # the final shipped layout only, not a stage in training
    if (shipped / "config.json").is_file():
        return shipped
    from coral_sdk.models.opentslm.backbone import BackboneShape, build_small_backbone
    from coral_sdk.models.opentslm.checkpoint import build_model, save_checkpoint
    from coral_sdk.models.opentslm.data import make_har_samples

    backbone = tmp_path / "backbone"
    shape = BackboneShape(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    samples = make_har_samples(32, length=32, seed=7)
    build_small_backbone(backbone, samples, shape=shape, pretrain_steps=3, batch_size=4)
    settings = {"encoder": {"dim": 16, "num_heads": 2, "num_layers": 1, "ff_dim": 32}}
    directory = tmp_path / "softprompt"
    save_checkpoint(build_model("softprompt", backbone, settings, None), directory, backbone)
    return directory


async def test_opentslm_agent_answers_series_questions(node: Any, tmp_path: Path) -> None:
    options = {
        "device": "cpu",
        "max_new_tokens": 8,
        "checkpoint": str(opentslm_checkpoint(tmp_path)),
    }
    agent = OpenTslmAgent(node.http, key_file=tmp_path / "tslm.key", options=options)
    alice = await user(node)
    series = np.sin(np.linspace(0, 12, 64)).round(4).tolist()
    request = {"question": "What activity is this?", "series": [series, series, series]}
    npy = tmp_path / "series.npy"
    np.save(npy, np.array([series, series, series]))
    try:
        async with running(agent):
            thread = await alice.create_thread("series", ["opentslm"])
            await alice.send(thread.id, data=request, mentions=[agent.did])
            from coral.protocol.message import FilePart

            await alice.send(
                thread.id,
                "What activity is this?",
                parts=[FilePart(uri=npy.as_uri(), media_type="application/x-npy")],
                mentions=[agent.did],
            )
            await alice.send(thread.id, data={"series": []}, mentions=[agent.did])
            # Outside the trained contract: refused with what it can answer, not a label.
            heart = {"question": "What is the heart rate?", "series": [series] * 3}
            await alice.send(thread.id, data=heart, mentions=[agent.did])
            ecg = {"question": "What activity is this?", "series": [series] * 12}
            await alice.send(thread.id, data=ecg, mentions=[agent.did])
            answers = await replies(alice, 5, timeout_s=120)
            record = await alice.get_agent(agent.did)
    finally:
        await alice.close()
    datas = [data_of(m) for m in answers]
    errors = sorted((d["error"]["reason"], d["error"]["detail"]) for d in datas if "error" in d)
    good = [d for d in datas if "error" not in d]
    assert [reason for reason, _ in errors] == [
        "invalid_series_request",
        "unsupported_question",
        "unsupported_series",
    ]
    for reason, detail in errors[1:]:
        assert "Answers only: activity" in detail and "walking_up" in detail, reason
    assert len(good) == 2 and all(set(d) == {"rationale", "label"} for d in good)
    assert good[0] == good[1]  # the file and the inline series are the same request
    # The directory entry advertises the trained question type and label set.
    assert "Answers only: activity: accelerometer series with 3 channels" in (
        record.manifest.description
    )
    assert all(label in record.manifest.description for label in agent.contract.labels)


async def test_serve_runs_a_manifest_with_replicas_until_sigterm(node: Any, tmp_path: Path) -> None:
    """``python -m coral_sdk.serve`` (what ``coral-agent serve`` calls) in its own process."""
    import os
    import signal
    import sys

    manifest = tmp_path / "echo2.toml"
    manifest.write_text(REGISTRY_ECHO.read_text().replace("replicas = 1", "replicas = 2"))
    env = {
        **os.environ,
        "CORAL_AGENT_KEY_FILE": str(tmp_path / "echo.key"),
        "CORAL_OPTION_PREFIX": "served: ",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coral_sdk.serve",
        str(manifest),
        "--node",
        node.http,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    alice = await user(node)
    try:
        async with asyncio.timeout(60):
            while True:
                try:
                    echo = await alice.get_agent("echo")
                    break
                except Exception:
                    assert process.returncode is None
                    await asyncio.sleep(0.2)
        thread = await alice.create_thread("cli", ["echo"])
        for i in range(12):
            await alice.send(thread.id, f"x{i}", mentions=[echo.agent])
        answers = await replies(alice, 12)
    finally:
        await alice.close()
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    data = [data_of(m) for m in answers]
    assert sorted(d["echo"] for d in data) == sorted(f"served: x{i}" for i in range(12))
    assert {d["replica"] for d in data} == {0, 1} and {d["pid"] for d in data} == {process.pid}


async def test_network_tool_pays_on_answers_and_voids_on_refusals(
    node: Any, tmp_path: Path
) -> None:
    from coral_sdk.agents.coral_tool import (
        AgentRefused,
        AgentUnreachable,
        CoralNetworkTool,
        PriceAboveLimit,
    )
    from coral_sdk.models.trm import SHIPPED_SUDOKU4

    trm = TrmAgent(
        node.http,
        key_file=tmp_path / "trm.key",
        manifest=load_manifest("trm").agent_manifest(),
        options={"device": "cpu", "checkpoint": str(SHIPPED_SUDOKU4)},
    )
    bob = await user(node, "bob")
    tool = CoralNetworkTool(bob, timeout_s=30, ledger=LedgerClient(bob), max_price=5)
    [puzzle] = sudoku_puzzles(1, seed=5)
    try:
        async with running(trm):
            await fund(node, bob, bob.did, 10)
            answer = json.loads(await tool.call("trm", json.dumps(puzzle)))
            with pytest.raises(AgentRefused, match="malformed_puzzle"):
                await tool.call("trm", {"task": "sudoku4"})
            with pytest.raises(AgentUnreachable):
                await tool.call("nobody", "hello")
            stingy = CoralNetworkTool(bob, ledger=LedgerClient(bob), max_price=1)
            with pytest.raises(PriceAboveLimit):
                await stingy.call("trm", json.dumps(puzzle))
            balances = [(await LedgerClient(c).balance()).balance for c in (bob, trm.client)]
    finally:
        await tool.aclose()
        await bob.close()
    assert np.array(answer["solution"]).shape == (4, 4)
    assert [p["status"] for p in tool.payments] == ["posted", "voided"]
    assert balances == [8, 2]
    assert len(tool.threads) == 2 and not stingy.threads  # too dear: not even a thread


async def test_trained_planner_engine_serves_the_flow_grpo_policy_calling_trm(
    node: Any, tmp_path: Path
) -> None:
    """``engine = "trained-planner"``: the shipped Flow-GRPO policy plans; TRM is a network tool."""
    from coral_sdk.models.agentflow.flow_grpo.policy import SHIPPED_PLANNER, load_planner
    from coral_sdk.models.agentflow.flow_grpo.tasks import generate_tasks, puzzle_question
    from coral_sdk.models.trm import CHECKPOINTS_DIR
    from coral_sdk.models.trm.tasks import sudoku

    puzzle, solution = sudoku.generate_minimal(4, np.random.default_rng(21))
    arithmetic = next(t for t in generate_tasks(8, seed=99) if t.kind == "arithmetic")
    # The 4x4 checkpoint solves every 4x4 puzzle, so the answer can be checked exactly.
    trm = TrmAgent(
        node.http,
        key_file=tmp_path / "trm.key",
        options={"device": "cpu", "checkpoint": str(CHECKPOINTS_DIR / "sudoku4")},
    )
    flow = AgentFlowAgent(
        node.http,
        key_file=tmp_path / "flow.key",
        options={"engine": "trained-planner", "tool_timeout_s": 120.0},
    )
    alice = await user(node)
    try:
        async with running(trm, flow):
            thread = await alice.create_thread("ask", ["agentflow"])
            await alice.send(thread.id, puzzle_question(puzzle.tolist()), mentions=[flow.did])
            [solved] = await replies(alice, 1, timeout_s=180)
            await alice.send(thread.id, arithmetic.question, mentions=[flow.did])
            computed = await replies(alice, 2, timeout_s=180)
    finally:
        await alice.close()
    result = data_of(solved)
    assert json.loads(result["answer"]) == solution.tolist()
    assert [call["tool"] for call in result["tool_calls"]] == ["coral_agent"]
    assert json.loads(result["tool_calls"][0]["result"])["verified"] is True
    assert flow.network_tool.calls == 1 and trm.continuous.stats().items == 1
    second = next(data_of(m) for m in computed if data_of(m) != result)
    assert second["answer"] == arithmetic.answer
    assert [call["tool"] for call in second["tool_calls"]] == ["python_calculator"]
    # What the agent served is the trained policy on disk, not a rule.
    _, featurizer, config = load_planner(SHIPPED_PLANNER)
    assert featurizer.tool_names == [
        "python_calculator",
        "document_search",
        "base_generator",
        "coral_agent",
    ]
    assert config["heldout_greedy_accuracy"][1] > config["heldout_greedy_accuracy"][0]
