"""Model agent replicas on a local Ray instance via Ray Serve, behind one Coral agent.

Skipped, loudly, when Ray Serve is not installed (the optional ``ray`` extra).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from coral.protocol.identity import Identity
from coral.protocol.message import Message
from coral_sdk import AgentManifest, CoralClient

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'ray[serve]'")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed")


@pytest.fixture
def local_ray() -> Iterator[None]:
    # Two CPUs are all this machine may use; replicas ask for none so both fit.
    # Ray waits a fixed 30 s for its own raylet to register and then raises a bare
    # Exception; on a busy 2-core machine that start-up can run late, so it gets
    # one more try. Any other failure, or a second timeout, fails the test.
    for attempt in (1, 2):
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
            )
            break
        except Exception as exc:
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


async def test_ray_serve_replicas_answer_each_request_once(
    node: Any, tmp_path: Any, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from coral_sdk.ray_serve import deploy, front_agent

    monkeypatch.setenv("CORAL_AGENT_KEY_FILE", str(tmp_path / "echo.key"))
    handle = await asyncio.to_thread(
        deploy, "echo", replicas=2, cpus_per_replica=0, options={"prefix": "ray: "}
    )
    agent = front_agent("echo", handle, node_url=node.http, report_replica=True)
    runner = asyncio.create_task(agent.run())
    alice = CoralClient(node.http, Identity.generate())
    await alice.register(AgentManifest(name="alice"))
    try:
        async with asyncio.timeout(30):
            while agent.record is None:
                await asyncio.sleep(0.05)
        thread = await alice.create_thread("ray", ["echo"])
        for i in range(16):
            await alice.send(thread.id, f"q{i}", mentions=[agent.did])
        answers: list[Message] = []
        cursor = 0
        async with asyncio.timeout(90):
            while len(answers) < 16:
                page = await alice.wait("mention", after=cursor, timeout_ms=10_000)
                answers += [item.entry.message for item in page.entries]
                cursor = page.cursor
    finally:
        agent.stop()
        await runner
        await alice.close()
    data = [m.data()[0] for m in answers]
    assert sorted(d["echo"] for d in data) == sorted(f"ray: q{i}" for i in range(16))
    replica_pids = {d["_replica_pid"] for d in data}
    assert all(pid != __import__("os").getpid() for pid in replica_pids)
    assert 1 <= len(replica_pids) <= 2
