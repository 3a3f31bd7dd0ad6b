"""Fixtures for the A2A and MCP front doors: one real node process per test module."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from coral_sdk import Agent, AgentManifest, Incoming
from tests.support.nodeproc import NodeProcess


class Echo(Agent):
    """The SDK agent behind the A2A front door in these tests."""

    manifest = AgentManifest(
        name="echo", description="repeats what it is told", capabilities=("chat",)
    )

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"


class Silent(Agent):
    """Never answers: its A2A tasks stay working until canceled."""

    manifest = AgentManifest(name="silent", description="says nothing")

    async def on_mention(self, message: Incoming) -> None:
        return None


@pytest.fixture(scope="module")
def interop_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node process shared by the tests of one module."""
    node = NodeProcess(tmp_path_factory.mktemp("interop") / "node").start()
    yield node
    node.kill()


def admin_token(node: NodeProcess) -> str:
    return (node.data_dir / "keys" / "admin.token").read_text().strip()


def admin_post(node: NodeProcess, path: str, body: dict[str, Any], token: str | None = None) -> Any:
    """POST to an admin route; returns (status, json)."""
    request = urllib.request.Request(
        node.http + path,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token or admin_token(node)}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def create_mcp_agent(node: NodeProcess, name: str) -> dict[str, Any]:
    status, body = admin_post(node, "/v1/admin/mcp-agents", {"name": name, "description": name})
    assert status == 201, body
    return dict(body)


async def run_agent(agent: Agent) -> asyncio.Task[None]:
    """Start an SDK agent and wait until it is registered."""
    task = asyncio.create_task(agent.run())
    for _ in range(200):
        if agent.record is not None:
            return task
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    raise TimeoutError("agent did not register")


@pytest.fixture
async def echo(
    interop_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Echo]:
    """The echo SDK agent, running for one test (same key across tests)."""
    key = interop_node.data_dir.parent / "echo.key"  # per node: the cursor file is too
    agent = Echo(interop_node.http, key_file=key)
    task = await run_agent(agent)
    yield agent
    agent.stop()
    await task


@pytest.fixture
async def silent(
    interop_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Silent]:
    key = interop_node.data_dir.parent / "silent.key"
    agent = Silent(interop_node.http, key_file=key)
    task = await run_agent(agent)
    yield agent
    agent.stop()
    await task


async def admin_post_async(node: NodeProcess, path: str, body: dict[str, Any]) -> Any:
    """Like ``admin_post`` without blocking the event loop (in-process servers keep serving)."""
    import httpx

    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            node.http + path, json=body, headers={"Authorization": f"Bearer {admin_token(node)}"}
        )
    return response.status_code, response.json()
