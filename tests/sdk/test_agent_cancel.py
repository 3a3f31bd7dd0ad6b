"""Cancelling a running SDK agent leaves no task behind (real node process)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from pathlib import Path
from typing import Any

from coral_sdk import Agent, AgentManifest, Incoming


class Quiet(Agent):
    manifest = AgentManifest(name="quiet", description="waits for mentions")

    async def on_mention(self, message: Incoming) -> str:
        return "ok"


async def test_cancelling_run_cancels_and_awaits_its_wait(node: Any, tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    unretrieved: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
    agent = Quiet(node.http, key_file=tmp_path / "quiet.key")
    runner = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.ready.wait(), 60)
    # Let run() reach its long-poll: the node counts one open wait.
    while "coral_waits_open 1.0" not in await asyncio.to_thread(_metrics, node):
        await asyncio.sleep(0.05)
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    # No child of run() is left pending (the wait and the stop watcher).
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == [], leftover
    assert unretrieved == []


def _metrics(node: Any) -> str:
    with urllib.request.urlopen(node.http + "/metrics", timeout=30) as resp:
        return str(resp.read().decode())
