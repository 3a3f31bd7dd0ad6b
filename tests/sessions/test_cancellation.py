"""A cancelled session call never leaves a session or an agent process half-handled.

Real engine, held agents, SQLite and agent processes (the ``parts`` fixture of
``test_service``); each test cancels the caller at one await and checks what
is left afterwards.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from coral.api.mcp.held_agents import HeldAgents
from coral.api.mcp.tools import CoralTools
from coral.sessions.graph import RuntimeSettings, parse_session_request
from coral.sessions.runtime import AgentOutput, ExecutableProcess, LaunchPlan
from coral.sessions.service import SessionManager
from tests.sessions.test_service import parts, request
from tests.support.gates import Gated, cancel_at

__all__ = ["parts"]  # the fixture, shared with test_service

Parts = tuple[SessionManager, CoralTools, HeldAgents]


async def test_a_cancelled_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path):
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: print('term', flush=True))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    output = AgentOutput()
    exited = asyncio.Event()
    codes: list[int | None] = []

    def on_exit(code: int | None) -> None:
        codes.append(code)
        exited.set()

    process = ExecutableProcess(
        "stubborn", LaunchPlan((sys.executable, "-c", script), tmp_path, {}), output
    )
    await process.start(on_exit)
    try:
        await _line(output, "[stdout] ready")
        stopping = asyncio.ensure_future(process.stop(grace_s=600))
        await _line(output, "[stdout] term")  # SIGTERM arrived; stop waits out its grace
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        await asyncio.wait_for(exited.wait(), 60)
        assert codes == [-9]  # the cancelled stop sent SIGKILL instead of waiting 600 s
    finally:
        if process.returncode is None and process.proc is not None:
            process.proc.kill()


async def _line(output: AgentOutput, wanted: str) -> None:
    for _ in range(600):
        if wanted in output.lines:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wanted!r} never printed: {list(output.lines)}")


async def test_a_cancelled_end_still_ends_the_session(parts: Parts):
    manager, _, held = parts
    manager.create_namespace("ns", True, {})
    session = await manager.create(request())
    keys = Gated(manager.keys)
    manager.keys = keys
    await cancel_at(keys, "retire_session_agent", manager.end(session, "bye"))
    assert session.ended.is_set()
    assert "ns" not in manager.namespaces  # removed with its last session
    for agent in session.agents.values():
        assert agent.status == "stopped"
        assert held.get(agent.did) is None  # every agent retired
    await manager.end(session, "again")  # returns at once: the session has ended


async def test_a_cancelled_launch_starts_every_agent_and_arms_the_ttl(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
):
    manager, _, _ = parts
    raw: dict[str, Any] = request().model_dump()
    raw["namespaceProvider"] = {"type": "create_if_not_exists", "namespaceRequest": {"name": "l"}}
    raw["execution"] = {"mode": "defer"}
    session = await manager.create(parse_session_request(raw))
    assert all(a.status == "waiting" for a in session.agents.values())

    entered, release = asyncio.Event(), asyncio.Event()
    original = ExecutableProcess.start

    async def start(self: ExecutableProcess, on_exit: Any) -> None:
        if not entered.is_set():  # the first agent's start parks until released
            entered.set()
            await release.wait()
        await original(self, on_exit)

    monkeypatch.setattr(ExecutableProcess, "start", start)
    launching = asyncio.ensure_future(
        manager.launch(session, RuntimeSettings.model_validate({"ttl": 300}))
    )
    await entered.wait()
    launching.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await launching
    assert all(a.start_ms is not None for a in session.agents.values())  # none left waiting
    await asyncio.wait_for(session.ended.wait(), 60)  # the TTL was armed and fired
    assert session.end_reason == "ttl expired"
    assert all(len(a.usage) == 1 for a in session.agents.values())
