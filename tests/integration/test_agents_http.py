"""SDK agents against a real node process over HTTP: registration, threads, waiting.

Tests taking ``backend_node`` run twice: on SQLite, then with every store on a
fresh PostgreSQL database (``node_backend``, see ``tests/support/backends.py``).
"""

from __future__ import annotations

import asyncio

import pytest

from coral.coordination.model import Thread, WaitResult
from coral.protocol.identity import Identity
from coral_sdk import Agent, AgentManifest, CoralApiError, CoralClient, Incoming


class Echo(Agent):
    manifest = AgentManifest(name="echo", description="repeats", capabilities=("chat", "echo"))

    async def on_mention(self, message: Incoming) -> str:
        return f"echo: {message.text}"


async def registered(node, name: str, *caps: str) -> CoralClient:
    client = CoralClient(node.http, Identity.generate())
    await client.register(AgentManifest(name=name, capabilities=caps))
    return client


async def test_register_is_countersigned_and_searchable(backend_node):
    node = backend_node  # SQLite, then PostgreSQL
    from coral.protocol.agent import verify_record

    alice = await registered(node, "alice", "chat", "math")
    try:
        record = await alice.get_agent("alice")
        verify_record(record)
        assert record.home_node == node.node_id and record.agent == alice.did
        assert [r.agent for r in await alice.list_agents(capability="math")] == [alice.did]
        assert await alice.list_agents(capability="nope") == []
        await alice.deregister(record.manifest)
        with pytest.raises(CoralApiError) as info:
            await alice.get_agent(alice.did)
        assert info.value.reason == "agent_not_registered"
    finally:
        await alice.close()


async def test_echo_agent_answers_a_mention(node, tmp_path):
    echo = Echo(node.http, key_file=tmp_path / "echo.key")
    runner = asyncio.create_task(echo.run())
    alice = await registered(node, "alice")
    try:
        for _ in range(100):
            if echo.record is not None:
                break
            await asyncio.sleep(0.05)
        thread = await alice.create_thread("chat", ["echo"])
        assert thread.participants == (alice.did, echo.did)
        await alice.send(thread.id, "hello", mentions=[echo.did])
        got = await alice.wait("mention", timeout_ms=10_000)
        reply = got.entries[0].entry.message
        assert reply.sender == echo.did
        assert reply.text() == "echo: hello"
    finally:
        echo.stop()
        await runner
        await alice.close()
    assert (tmp_path / "echo.key").exists()


async def test_every_thread_operation_and_its_refusals(backend_node):
    node = backend_node  # SQLite, then PostgreSQL
    alice = await registered(node, "alice")
    bob = await registered(node, "bob")
    carol = await registered(node, "carol")
    try:
        thread = await alice.create_thread("work", [bob.did])
        tid = thread.id
        await alice.send(tid, "first", mentions=[bob.did])
        # Mentions must name participants, and not the sender.
        with pytest.raises(CoralApiError) as info:
            await alice.send(tid, "hi carol", mentions=[carol.did])
        assert info.value.reason == "mention_not_participant"
        with pytest.raises(CoralApiError) as info:
            await alice.send(tid, "me", mentions=[alice.did])
        assert info.value.reason == "mention_self"
        # Non-participants can neither post nor read.
        with pytest.raises(CoralApiError) as info:
            await carol.send(tid, "let me in")
        assert info.value.status == 403
        with pytest.raises(CoralApiError) as info:
            await carol.history(tid)
        assert info.value.status == 403
        # A new participant receives the history.
        await alice.add_participant(tid, "carol")
        got = await carol.wait("message", timeout_ms=5_000)
        texts = [e.entry.message.text() for e in got.entries]
        assert "first" in texts
        page = await carol.history(tid)
        assert [e.seq for e in page.entries] == list(range(1, len(page.entries) + 1))
        await alice.remove_participant(tid, carol.did)
        with pytest.raises(CoralApiError):
            await carol.send(tid, "still here?")
        closed = await alice.close_thread(tid, "done")
        assert isinstance(closed, Thread)
        assert (closed.state, closed.summary) == ("closed", "done")
        with pytest.raises(CoralApiError) as info:
            await bob.send(tid, "too late")
        assert info.value.reason == "thread_closed"
        assert [t.id for t in await bob.threads()] == [tid]
    finally:
        for c in (alice, bob, carol):
            await c.close()


async def test_unregistered_sender_and_unknown_agent_are_refused(node):
    stranger = CoralClient(node.http, Identity.generate())
    alice = await registered(node, "alice")
    try:
        with pytest.raises(CoralApiError) as info:
            await stranger.create_thread("x", [alice.did])
        assert info.value.reason == "agent_not_registered"
        with pytest.raises(CoralApiError) as info:
            await alice.create_thread("x", ["nobody"])
        assert info.value.status == 404
    finally:
        await stranger.close()
        await alice.close()


async def test_wait_from_agent_and_absurd_timeouts(backend_node):
    node = backend_node  # SQLite, then PostgreSQL
    alice = await registered(node, "alice")
    bob = await registered(node, "bob")
    try:
        tid = (await alice.create_thread("t", [bob.did])).id
        cursor = (await bob.wait("message", timeout_ms=2000)).cursor
        await alice.send(tid, "from alice")
        got = await bob.wait("agent", from_agent=alice.did, after=cursor, timeout_ms=5000)
        assert got.entries[0].entry.message.sender == alice.did
        for bad in (0, -5, 3_600_000):
            with pytest.raises(CoralApiError) as info:
                await bob.wait("mention", timeout_ms=bad)
            assert info.value.status == 400
        timed_out = await bob.wait("mention", after=got.cursor, timeout_ms=100)
        assert timed_out.timed_out and timed_out.cursor == got.cursor
    finally:
        await alice.close()
        await bob.close()


async def test_a_flood_of_waits_is_bounded(node):
    alice = await registered(node, "alice")
    try:
        waits = [asyncio.create_task(alice.wait("mention", timeout_ms=3000)) for _ in range(12)]
        results = await asyncio.gather(*waits, return_exceptions=True)
        refused = [r for r in results if isinstance(r, CoralApiError)]
        assert refused and all(r.status == 429 for r in refused)
        assert any(isinstance(r, WaitResult) for r in results)
    finally:
        await alice.close()


async def test_unsigned_reads_are_refused(node):
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(node.http + "/v1/threads") as resp:
        assert resp.status == 401
        assert (await resp.json())["reason"] == "auth_required"


async def test_cli_agents_lists_the_directory(node):
    import json
    import subprocess
    import sys

    alice = await registered(node, "alice", "math")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "coral",
                "agents",
                "--data-dir",
                str(node.data_dir),
                "--json",
                "--capability",
                "math",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert [r["agent"] for r in json.loads(result.stdout)] == [alice.did]
        human = subprocess.run(
            [sys.executable, "-m", "coral", "agents", "--url", node.http],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert human.returncode == 0 and "alice" in human.stdout and "agent(s)" in human.stdout
    finally:
        await alice.close()


async def test_message_flood_from_one_agent_is_rate_limited(node_factory):
    node = node_factory("limited", CORAL_AGENT_MESSAGE_RATE="5")
    alice = await registered(node, "alice")
    bob = await registered(node, "bob")
    try:
        tid = (await alice.create_thread("t", [bob.did])).id
        outcomes = []
        for i in range(30):
            try:
                await alice.send(tid, f"m{i}")
                outcomes.append("ok")
            except CoralApiError as exc:
                outcomes.append(exc.reason)
        assert "rate_limited" in outcomes and outcomes[0] == "ok"
        await bob.send(tid, "bob is not limited by alice's flood")
    finally:
        await alice.close()
        await bob.close()


async def test_registered_agents_gauge_follows_registrations(backend_node):
    node = backend_node  # SQLite, then PostgreSQL
    import urllib.request

    def gauge() -> float:
        with urllib.request.urlopen(node.http + "/metrics", timeout=10) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("coral_agents_registered "):
                    return float(line.split()[1])
        raise AssertionError("coral_agents_registered missing")

    start = gauge()
    alice = await registered(node, "alice")
    try:
        for _ in range(50):
            if gauge() == start + 1:
                break
            await asyncio.sleep(0.1)
        assert gauge() == start + 1
    finally:
        await alice.close()
