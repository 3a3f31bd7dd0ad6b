"""The session lifecycle in process: real engine, held agents, SQLite and agent processes."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coral.api.mcp.held_agents import HeldAgents
from coral.api.mcp.tools import CoralTools
from coral.node.subsystems.sessions import HeldSessionAgentKeys
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.sessions.graph import parse_session_request
from coral.sessions.registry import AgentRegistry
from coral.sessions.service import SessionManager, SessionServerSettings
from coral.store.sqlite import SqliteDatabase
from coral.store.wait_cursors_sqlite import SqliteWaitCursors
from tests.api.interop.test_held_agents import build

QUITTER = """
edition = 4
[agent]
name = "quitter"
version = "1.0.0"
[runtimes.executable]
path = "{python}"
arguments = ["-c", "import os; print('bye from', os.environ['CORAL_AGENT_ID'])"]
"""

SLEEPER = """
edition = 4
[agent]
name = "sleeper"
version = "1.0.0"
description = "sleeps until stopped"
[runtimes.executable]
path = "{python}"
arguments = ["-c", "import time; time.sleep(600)"]
"""


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[SessionManager, CoralTools, HeldAgents]]:
    folder = tmp_path / "registry" / "sleeper"
    folder.mkdir(parents=True)
    (folder / "coral-agent.toml").write_text(SLEEPER.format(python=sys.executable))
    quitter = tmp_path / "registry" / "quitter"
    quitter.mkdir()
    (quitter / "coral-agent.toml").write_text(QUITTER.format(python=sys.executable))
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    held, tools = await build(db, tmp_path / "keys", Identity.generate())
    webhooks: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(url: str, body: bytes, headers: dict[str, str]) -> None:
        webhooks.append((url, body, headers))

    manager = SessionManager(
        AgentRegistry.scan([str(tmp_path / "registry" / "*")]),
        tools.engine,
        HeldSessionAgentKeys(held),
        SessionServerSettings("http://127.0.0.1:1", "secret", stop_grace_s=2.0),
        post,
        now_ms,
        tools.name_of,
    )
    tools.scopes = manager
    held.connection_listeners.append(manager.mark_connected)
    manager.sent_webhooks = webhooks  # type: ignore[attr-defined]
    yield manager, tools, held
    await manager.close_all()
    await db.close()


def request(*plugins: str) -> Any:
    agent = {
        "id": {"name": "sleeper", "version": "1.0.0"},
        "name": "sleepy",
        "provider": {"type": "local", "runtime": "executable"},
        "plugins": [{"type": p} for p in plugins],
    }
    other = {**agent, "name": "other", "plugins": []}
    return parse_session_request(
        {
            "agentGraphRequest": {"agents": [agent, other]},
            "namespaceProvider": {"type": "use_existing", "name": "ns"},
        }
    )


async def test_close_session_tool_is_offered_only_with_its_plugin_and_ends_the_session(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    manager, tools, held = parts
    manager.create_namespace("ns", True, {})
    session = await manager.create(request("close_session_tool"))
    sleepy = held.get(session.agent("sleepy").did)
    other = held.get(session.agent("other").did)
    assert sleepy is not None and other is not None
    assert "coral_close_session" in tools.tools_for(sleepy)
    assert "coral_close_session" not in tools.tools_for(other)
    pids = [a.runtime.pid for a in session.agents.values() if a.runtime is not None]
    assert len(pids) == 2 and all(pids)
    made = await tools.call(
        sleepy, "coral_create_thread", {"threadName": "t", "participantNames": ["other"]}
    )
    assert made["thread"]["participants"] == ["sleepy", "other"]
    from coral.sessions.service import AgentNotRunning

    await manager.stop_agent(session, "other")  # the puppet API's kill
    assert session.agent("other").status == "stopped"
    with pytest.raises(AgentNotRunning):
        await manager.stop_agent(session, "other")
    answer = await tools.call(sleepy, "coral_close_session", {"reason": "done"})
    assert answer == {"message": "Successfully closed session"}
    await session.ended.wait()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "ns" not in manager.namespaces  # deleted with its last session
    from coral.api.mcp.held_agents import WrongSecret

    assert held.get(sleepy.did) is None  # retired: deregistered, secret and key forgotten
    assert not await tools.directory.is_registered(sleepy.did)
    with pytest.raises(WrongSecret):
        await held.by_secret(session.agent("sleepy").secret)
    thread = await tools.engine.store.get_thread(made["thread"]["id"])
    assert thread is not None and thread.state == "closed"
    assert thread.summary == "session ended: closed by done"


async def test_names_are_per_session_so_two_sessions_reuse_graph_names(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    manager, tools, held = parts
    manager.create_namespace("ns", False, {})
    first = await manager.create(request())
    second = await manager.create(request())
    a = held.get(first.agent("sleepy").did)
    b = held.get(second.agent("sleepy").did)
    assert a is not None and b is not None and a.did != b.did
    one = await tools.call(
        a, "coral_create_thread", {"threadName": "x", "participantNames": ["other"]}
    )
    assert one["thread"]["participants"] == ["sleepy", "other"]
    assert first.agent("other").did != second.agent("other").did
    threads = await manager.threads(first)
    assert [t.id for t in threads] == [one["thread"]["id"]]
    assert await manager.threads(second) == []


async def test_wait_cursors_survive_a_restart(tmp_path: Path):
    node = Identity.generate()
    db = SqliteDatabase(tmp_path / "coral.db")
    await db.open()
    held, tools = await build(db, tmp_path / "keys", node)
    cursors = SqliteWaitCursors(db)
    await cursors.open()
    tools.cursors = cursors
    from coral.api.mcp.held_agents import MCP_KIND
    from coral.protocol.agent import AgentManifest

    ann, _ = await held.create(AgentManifest(name="ann"), MCP_KIND)
    bob, _ = await held.create(AgentManifest(name="bob"), MCP_KIND)
    made = await tools.call(
        ann, "coral_create_thread", {"threadName": "t", "participantNames": ["bob"]}
    )
    for text in ("one", "two"):
        await tools.call(
            ann,
            "coral_send_message",
            {"threadId": made["thread"]["id"], "content": text, "mentions": ["bob"]},
        )
    first = await tools.call(
        bob, "coral_wait_for_mention", {"currentUnixTime": 0, "maxWaitMs": 1000}
    )
    assert first["message"]["text"] == "one"
    await db.close()

    db = SqliteDatabase(tmp_path / "coral.db")  # the node restarts
    await db.open()
    held, tools = await build(db, tmp_path / "keys", node)
    cursors = SqliteWaitCursors(db)
    await cursors.open()
    tools.cursors = cursors
    bob_again = held.get(bob.did)
    assert bob_again is not None
    second = await tools.call(
        bob_again, "coral_wait_for_mention", {"currentUnixTime": 0, "maxWaitMs": 1000}
    )
    assert second["message"]["text"] == "two"  # not "one" again, and nothing lost
    replay = await tools.call(
        bob_again,
        "coral_wait_for_mention",
        {"currentUnixTime": 0, "maxWaitMs": 1000, "afterCursor": first["cursor"]},
    )
    assert replay["message"]["text"] == "two"  # a re-issued request gets the same answer
    await db.close()


async def test_custom_tools_are_forwarded_to_the_app_signed_as_coral_server_signs_them(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    import hashlib
    import hmac
    import json

    from aiohttp import web

    from coral.api.coralserver.custom_tools import AppClient

    manager, tools, held = parts
    calls: list[tuple[str, bytes, dict[str, str]]] = []

    async def lookup(request: web.Request) -> web.Response:
        calls.append((request.path, await request.read(), dict(request.headers)))
        if b"fail" in calls[-1][1]:
            return web.Response(status=500)
        return web.json_response({"answer": "found"})

    app = web.Application()
    app.router.add_post("/tools/lookup/{session}/{agent}", lookup)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/tools/lookup"
    client = AppClient()
    tools.custom_tool_caller = client.post
    tools.custom_tool_secret = "tool-secret"
    try:
        manager.create_namespace("ns", True, {})
        raw = request().model_dump()
        raw["agentGraphRequest"]["customTools"] = {
            "lookup": {
                "transport": {"type": "http", "url": url},
                "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
                "description": "look something up",
            }
        }
        raw["agentGraphRequest"]["agents"][0]["customToolAccess"] = ["lookup"]
        session = await manager.create(parse_session_request(raw))
        sleepy = held.get(session.agent("sleepy").did)
        other = held.get(session.agent("other").did)
        assert sleepy is not None and other is not None
        listed = tools.tools_for(sleepy)
        assert listed["lookup"] == (
            "look something up",
            {"type": "object", "properties": {"q": {"type": "string"}}},
        )
        assert "lookup" not in tools.tools_for(other)
        assert await tools.call(sleepy, "lookup", {"q": "coral"}) == {"answer": "found"}
        path, body, headers = calls[0]
        assert path == f"/tools/lookup/{session.id}/sleepy"
        assert json.loads(body) == {"q": "coral"}
        expected = hmac.new(b"tool-secret", body, hashlib.sha256).hexdigest()
        assert headers["X-Coral-Signature"] == expected
        assert (headers["X-Coral-SessionId"], headers["X-Coral-AgentName"]) == (
            session.id,
            "sleepy",
        )
        assert headers["X-Coral-Namespace"] == "ns"
        from coral.api.mcp.tools import CustomToolFailed

        with pytest.raises(CustomToolFailed, match="Error code 500 returned"):
            await tools.call(sleepy, "lookup", {"q": "fail"})
    finally:
        await client.close()
        await runner.cleanup()


async def test_blocking_agents_are_held_until_their_blocking_peers_connect(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    import asyncio

    manager, tools, held = parts
    manager.create_namespace("ns", True, {})
    raw = request().model_dump()
    for agent in raw["agentGraphRequest"]["agents"]:
        agent["blocking"] = True
    raw["agentGraphRequest"]["groups"] = [["sleepy", "other"]]
    session = await manager.create(parse_session_request(raw))
    sleepy, other = session.agent("sleepy"), session.agent("other")
    assert manager.blocking_peers(session, sleepy) == [other]
    with session.events.subscribe() as events:
        held_sleepy = held.get(sleepy.did)
        assert held_sleepy is not None
        call = asyncio.create_task(
            tools.call(
                held_sleepy,
                "coral_create_thread",
                {"threadName": "t", "participantNames": ["other"]},
            )
        )
        await held.by_secret(other.secret)  # other's first MCP request: it is connected
        made = await asyncio.wait_for(call, 30)
        assert made["thread"]["participants"] == ["sleepy", "other"]
        seen = []
        while not events.empty():
            event = events.get_nowait()
            assert event is not None
            seen.append((event["type"], event.get("name")))
    assert ("agent_connected", "other") in seen
    assert seen.index(("agent_connected", "other")) < seen.index(("thread_created", None))


async def test_a_session_ends_by_itself_when_its_last_agent_exits_and_reports_it(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    import json

    manager, _, _ = parts
    raw = {
        "agentGraphRequest": {
            "agents": [
                {
                    "id": {"name": "quitter", "version": "1.0.0"},
                    "name": "q",
                    "provider": {"type": "local", "runtime": "executable"},
                }
            ]
        },
        "namespaceProvider": {"type": "create_if_not_exists", "namespaceRequest": {"name": "x"}},
        "execution": {
            "mode": "immediate",
            "runtimeSettings": {"webhooks": {"sessionEnd": {"url": "http://127.0.0.1:9/end"}}},
        },
    }
    session = await manager.create(parse_session_request(raw))
    await asyncio.wait_for(session.ended.wait(), 60)
    assert session.end_reason == "all agents exited"
    assert list(session.agent("q").output.lines)[:2] == [
        "[stdout] bye from q",
        "[coral] exited with code 0",
    ]
    for _ in range(100):  # the webhook is sent in the background
        if manager.sent_webhooks:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    url, body, headers = manager.sent_webhooks[0]  # type: ignore[attr-defined]
    report = json.loads(body)
    assert url == "http://127.0.0.1:9/end"
    assert report["sessionState"]["type"] == "base"
    assert report["sessionState"]["state"]["id"] == session.id
    assert [s["name"] for s in report["agentStats"]] == ["q"]
    assert "X-Coral-Signature" in headers and "X-Coral-Timestamp" in headers


async def test_ttl_ends_a_session_and_hold_after_exit_keeps_it_visible_as_closing(
    parts: tuple[SessionManager, CoralTools, HeldAgents],
):
    manager, _, _ = parts
    raw = request().model_dump()
    raw["namespaceProvider"] = {"type": "create_if_not_exists", "namespaceRequest": {"name": "t"}}
    raw["execution"] = {
        "mode": "immediate",
        "runtimeSettings": {
            "ttl": 300,
            "persistenceMode": {"mode": "hold_after_exit", "duration": 600_000},
        },
    }
    session = await manager.create(parse_session_request(raw))
    for _ in range(600):  # the TTL fires in the background
        if session.status == "closing" and all(
            a.status == "stopped" for a in session.agents.values()
        ):
            break
        await asyncio.sleep(0.05)
    assert session.end_reason == "ttl expired"
    held_state = manager.session("t", session.id).base_state(now_ms())
    assert held_state["status"]["type"] == "closing"
    assert {"executionTime", "closingTime"} <= set(held_state["status"])
    assert not session.ended.is_set()  # removed only when the hold is over (or the node stops)
