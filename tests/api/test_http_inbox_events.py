"""GET /v1/inbox/events on a real node: SSE framing, ids as cursors, Last-Event-ID resume."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coral.protocol.agent import AgentManifest
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.protocol.request_auth import sign_request
from coral_sdk.client import CoralClient
from tests.support.nodeproc import NodeProcess

TARGET = "/v1/inbox/events?kind=message"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path / "node").start()
    try:
        yield proc
    finally:
        proc.kill()


async def _first_event(
    http: aiohttp.ClientSession, node: NodeProcess, agent: Identity, last_event_id: str | None
) -> dict[str, Any]:
    """The fields of the first event of a new stream (comments skipped)."""
    headers = {"Authorization": sign_request(agent, "GET", TARGET, b"", now_ms())}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with http.get(node.http + TARGET, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        while True:
            block = (await response.content.readuntil(b"\n\n")).decode()
            if not block.startswith(":"):
                break
    fields = dict(line.split(": ", 1) for line in block.strip("\n").split("\n"))
    assert list(fields) == ["id", "event", "data"]
    return fields


async def test_events_carry_their_cursor_as_id_and_resume_after_last_event_id(
    node: NodeProcess,
) -> None:
    sender, receiver = Identity.generate(), Identity.generate()
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        CoralClient(node.http, sender) as alice,
        CoralClient(node.http, receiver) as bob,
        aiohttp.ClientSession(timeout=timeout) as http,
    ):
        await alice.register(AgentManifest(name=f"alice-{uuid.uuid4().hex[:8]}"))
        await bob.register(AgentManifest(name=f"bob-{uuid.uuid4().hex[:8]}"))
        thread = await alice.create_thread("sse", [receiver.did])
        first = await _first_event(http, node, receiver, None)  # the thread's creation
        await alice.send(thread.id, "hello")
        resumed = await _first_event(http, node, receiver, first["id"])
    first_data, resumed_data = json.loads(first["data"]), json.loads(resumed["data"])
    assert first["event"] == resumed["event"] == "entry"
    assert (int(first["id"]), int(resumed["id"])) == (
        first_data["cursor"],
        resumed_data["cursor"],
    )
    assert int(resumed["id"]) > int(first["id"])
    parts = resumed_data["entry"]["message"]["parts"]
    assert [part.get("text") for part in parts] == ["hello"]
