"""The node launches registry agents as subprocesses: admin API, replicas, restarts, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest

from coral.protocol.identity import Identity
from coral.protocol.message import Message
from coral_sdk import AgentManifest, CoralClient


def admin(node: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    token = (node.data_dir / "keys" / "admin.token").read_text().strip()
    request = urllib.request.Request(
        node.http + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by the node) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def until(predicate: Any, timeout_s: float = 30.0) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (result := predicate()):
            await asyncio.sleep(0.1)
    return result


def pids(view: dict[str, Any]) -> list[int]:
    return [r["pid"] for r in view["replicas"] if r["status"] == "running" and r["pid"]]


async def test_launch_replicas_answer_once_restart_after_crash_and_stop(node: Any) -> None:
    status, refused = admin(node, "POST", "/v1/admin/launch", {"manifest": "echo", "replicas": 0})
    assert status == 400 and refused["reason"] == "invalid_launch"
    status, refused = admin(node, "POST", "/v1/admin/launch", {"manifest": "nope"})
    assert status == 400 and "no such manifest" in refused["detail"]
    status, refused = admin(
        node, "POST", "/v1/admin/launch", {"manifest": "echo", "name": "Not A Name"}
    )
    assert status == 400 and refused["detail"].startswith("name:")
    status, refused = admin(
        node, "POST", "/v1/admin/launch", {"manifest": "echo", "options": {"colour": 1}}
    )
    assert status == 400 and "options.colour" in refused["detail"]
    status, launched = admin(
        node,
        "POST",
        "/v1/admin/launch",
        {"manifest": "echo", "replicas": 2, "options": {"prefix": "re: "}},
    )
    assert status == 201 and launched["name"] == "echo" and len(launched["replicas"]) == 2
    launch_id = launched["id"]

    def view() -> dict[str, Any]:
        return admin(node, "GET", "/v1/admin/launched")[1]["launched"][0]

    alice = CoralClient(node.http, Identity.generate())
    await alice.register(AgentManifest(name="alice"))
    try:
        await until(lambda: len(pids(view())) == 2)

        async def registered() -> Any:
            while True:
                try:
                    return await alice.get_agent("echo")
                except Exception:
                    await asyncio.sleep(0.2)

        echo = await asyncio.wait_for(registered(), 60)
        thread = await alice.create_thread("t", ["echo"])
        for i in range(10):
            await alice.send(thread.id, f"m{i}", mentions=[echo.agent])
        answers: list[Message] = []
        cursor = 0
        async with asyncio.timeout(60):
            while len(answers) < 10:
                page = await alice.wait("mention", after=cursor, timeout_ms=10_000)
                answers += [item.entry.message for item in page.entries]
                cursor = page.cursor
        data = [m.data()[0] for m in answers]
        assert sorted(d["echo"] for d in data) == sorted(f"re: m{i}" for i in range(10))
        assert {d["pid"] for d in data} <= set(pids(view()))

        # Crash one replica: the node restarts it (same identity) after a short backoff.
        victim = pids(view())[0]
        os.kill(victim, 9)
        restarted = await until(
            lambda: (
                (v := view())
                and sum(r["restarts"] for r in v["replicas"]) == 1
                and len(pids(v)) == 2
                and v
            )
        )
        assert victim not in pids(restarted)
        assert any(r["last_exit_code"] == -9 for r in restarted["replicas"])

        children = pids(restarted)
        status, stopped = admin(node, "DELETE", f"/v1/admin/launched/{launch_id}")
        assert status == 200 and stopped["status"] == "stopped"
        await until(lambda: not any(alive(pid) for pid in children), 15)
        assert admin(node, "GET", "/v1/admin/launched")[1] == {"launched": []}
        status, missing = admin(node, "DELETE", f"/v1/admin/launched/{launch_id}")
        assert status == 404 and missing["reason"] == "launch_not_found"
    finally:
        await alice.close()


def test_admin_token_is_required(node: Any) -> None:
    request = urllib.request.Request(node.http + "/v1/admin/launched")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401


async def test_node_shutdown_stops_launched_agents(node: Any) -> None:
    status, _ = admin(node, "POST", "/v1/admin/launch", {"manifest": "echo"})
    assert status == 201

    def running() -> list[int]:
        return pids(admin(node, "GET", "/v1/admin/launched")[1]["launched"][0])

    children = await until(running)
    assert node.terminate() == 0
    await until(lambda: not any(alive(pid) for pid in children), 15)
