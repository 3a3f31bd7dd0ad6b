"""Waits and streams are admitted fairly and released promptly (real node processes).

- A long-poll whose client disconnects frees its wait slot when the disconnect
  is noticed, not when its timeout would have passed.
- A ninth concurrent SSE stream for one key is refused with a real 429
  before any response starts (not a 200 with a second response in the body).
- The node admits waits under a budget derived from its open-file limit and
  refuses past it with 503 + Retry-After, so /healthz and registrations still
  work while hundreds of long-polls are held open.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from coral.protocol.identity import Identity
from tests.hardening.support import agent_record, coral_auth, record_body
from tests.support.nodeproc import NodeProcess

LONG_POLL = "/v1/inbox?timeout_ms=60000"
STREAM = "/v1/inbox/events"
PER_KEY = 8  # the node's default concurrent waits per key

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = NodeProcess(Path(tmp) / "node").start()
        try:
            yield proc
        finally:
            proc.kill()


async def _send(node: NodeProcess, agent: Identity, target: str) -> Conn:
    """Open a connection and send a signed GET, without reading the answer."""
    where = urlsplit(node.http)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    auth = coral_auth(agent, "GET", target)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: {auth}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read a response's status and headers."""
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers


def _probe(node: NodeProcess, agent: Identity) -> int:
    """Status of an immediate wait (1 ms) for ``agent``: 200 admitted, 429 refused."""
    target = "/v1/inbox?timeout_ms=1"
    request = urllib.request.Request(
        node.http + target, headers={"Authorization": coral_auth(agent, "GET", target)}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _disconnects(node: NodeProcess) -> float:
    """How many HTTP clients the node has seen leave mid-request."""
    with urllib.request.urlopen(node.http + "/metrics", timeout=30) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith('coral_client_disconnects_total{api="http"}'):
                return float(line.split()[-1])
    return 0.0


def _register_newcomer(node: NodeProcess) -> int:
    request = urllib.request.Request(
        node.http + "/v1/agents",
        data=record_body(
            agent_record(Identity.generate(), node.node_id, f"newcomer-{uuid.uuid4().hex[:8]}")
        ),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return int(resp.status)


async def _status_within(node: NodeProcess, agent: Identity, want: int, seconds: float) -> int:
    """Probe until the answer is ``want`` or ``seconds`` pass; the last answer."""
    deadline = time.monotonic() + seconds
    status = await asyncio.to_thread(_probe, node, agent)
    while status != want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await asyncio.to_thread(_probe, node, agent)
    return status


async def test_a_long_poll_whose_client_leaves_frees_its_slot_at_once(node: NodeProcess) -> None:
    agent = Identity.generate()
    polls = [await _send(node, agent, LONG_POLL) for _ in range(PER_KEY)]
    assert await _status_within(node, agent, 429, 30) == 429  # all eight are held
    left_before = await asyncio.to_thread(_disconnects, node)
    for _, writer in polls:
        writer.close()
    # The node notices each client leave (a disconnect, not a 60 s timeout that
    # would answer 200): poll for the count, the guard only against a hang.
    async with asyncio.timeout(120):
        while await asyncio.to_thread(_disconnects, node) < left_before + PER_KEY:
            await asyncio.sleep(0.05)
    # A wait frees its slot before its disconnect is counted: a new one is admitted now.
    assert await asyncio.to_thread(_probe, node, agent) == 200


async def test_a_ninth_stream_is_refused_with_a_real_429(node: NodeProcess) -> None:
    agent = Identity.generate()
    streams = [await _send(node, agent, STREAM) for _ in range(PER_KEY)]
    try:
        for reader, _ in streams:
            status, headers = await _head(reader)
            assert status == 200 and headers["content-type"] == "text/event-stream"
        reader, writer = await _send(node, agent, STREAM)
        status, headers = await _head(reader)
        assert status == 429, headers
        assert headers["content-type"].startswith("application/problem+json")
        body = await reader.readexactly(int(headers["content-length"]))
        assert json.loads(body)["reason"] == "too_many_waits"
        writer.close()
    finally:
        for _, w in streams:
            w.close()


async def test_the_node_wide_wait_budget_keeps_health_and_registration_working(
    tmp_path: Path,
) -> None:
    # 256 open files: the derived budget is 192 waits, leaving 64 descriptors.
    node = NodeProcess(tmp_path / "fd-bound", nofile=256).start()
    polls: list[Conn] = []
    try:
        for _ in range(28):  # 28 keys x 8 waits = 224 long-polls, past the budget
            agent = Identity.generate()
            polls += [await _send(node, agent, LONG_POLL) for _ in range(PER_KEY)]
        answers = [asyncio.ensure_future(_head(reader)) for reader, _ in polls]
        # Held waits answer only after their 60 s; refusals answer at once.
        done, _ = await asyncio.wait(answers, timeout=40, return_when=asyncio.ALL_COMPLETED)
        refused = [head for head in (task.result() for task in done) if head[0] == 503]
        # Everything past the budget was refused, each with a retry hint.
        assert len(refused) >= len(polls) - 192, [task.result()[0] for task in done]
        assert all(headers.get("retry-after") == "1" for _, headers in refused)
        assert node.get_json("/healthz") == {"status": "ok"}
        assert await asyncio.to_thread(_register_newcomer, node) == 201
        for task in answers:
            task.cancel()
    finally:
        for _, writer in polls:
            writer.close()
        node.kill()
    assert "Too many open files" not in node.output()
