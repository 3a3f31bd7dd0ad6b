"""The drop-in, end to end: a coral-server SessionRequest launches two unchanged MCP agents.

A real node process reads a coral-server config.toml through CONFIG_FILE_PATH;
its registry holds the two example agents (plain MCP clients, one over
Streamable HTTP, one over SSE, reading only coral-server's environment). The
session's thread is checked through the session state, the puppet API, the
node's own APIs and the event websockets; DELETE stops both agents and the
session-end webhook arrives signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import time
from datetime import datetime
from typing import Any

import aiohttp
import httpx

from coral.sessions.events import verify_webhook
from tests.api.coralserver.conftest import (
    EXAMPLES,
    KEY,
    WEBHOOK_SECRET,
    DropIn,
    WebhookReceiver,
    agent_request,
    session_request,
)


async def collect(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            into.append(json.loads(msg.data))


async def until(check: Any, what: str, timeout: float = 120.0) -> Any:
    """Poll ``check()`` until it returns something truthy (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def log_line(lines: list[str], prefix: str) -> str | None:
    for line in lines:
        if line.startswith("[stdout] " + prefix):
            return line[len("[stdout] ") + len(prefix) :].strip()
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_registry_needs_a_key_and_lists_the_good_agents_despite_a_broken_toml(
    drop_in: DropIn,
):
    async with drop_in.client(None) as anonymous, drop_in.client("wrong") as wrong:
        assert (await anonymous.get("/api/v1/registry")).status_code == 401
        refused = await wrong.get("/api/v1/registry")
        assert refused.status_code == 401
        assert refused.json()["message"] == "invalid token"
    async with drop_in.client() as api:
        sources = (await api.get("/api/v1/registry")).json()
        agents = {a["name"]: a["versions"] for a in sources[0]["agents"]}
        assert agents == {"answerer": ["0.1.0"], "asker": ["0.1.0"], "boxed": ["0.1.0"]}
        assert any(str(drop_in.broken) in p for p in sources[0]["problems"])
        answerer = (await api.get("/api/v1/registry/local/answerer/0.1.0")).json()
        assert answerer["edition"] == 4
        assert answerer["options"]["FACTOR"] == {
            "type": "i32",
            "required": True,
            "transport": "env",
        }
        assert answerer["runtimes"] == ["executable"]


async def test_a_session_runs_two_mcp_agents_through_the_coral_tools(
    drop_in: DropIn, webhook: WebhookReceiver
):
    server_events: list[dict[str, Any]] = []
    session_events: list[dict[str, Any]] = []
    request = session_request(
        [
            agent_request("asker", "asker", {"NUMBER": {"type": "i32", "value": 6}}),
            agent_request(
                "answerer",
                "answerer",
                {"FACTOR": {"type": "i32", "value": 7}},
                systemPrompt="Multiply what you are sent.",
                plugins=[{"type": "close_session_tool"}],
            ),
        ],
        namespace="e2e",
        execution={
            "mode": "immediate",
            "runtimeSettings": {
                "extendedEndReport": True,
                "persistenceMode": {"mode": "none"},
                "webhooks": {"sessionEnd": {"url": webhook.url}},
            },
        },
    )
    ws_base = drop_in.api.replace("http://", "ws://")
    async with aiohttp.ClientSession() as http, drop_in.client() as api:
        lsm = await http.ws_connect(f"{ws_base}/ws/v1/events/{KEY}/lsm")
        lsm_task = asyncio.create_task(collect(lsm, server_events))
        created = await api.post("/api/v1/local/session", json=request)
        assert created.status_code == 200, created.text
        ident = created.json()
        assert set(ident) == {"namespace", "sessionId"} and ident["namespace"] == "e2e"
        path = f"/api/v1/local/session/e2e/{ident['sessionId']}"
        events_ws = await http.ws_connect(
            f"{ws_base}/ws/v1/events/session/e2e/{ident['sessionId']}",
            headers={"Authorization": f"Bearer {KEY}"},
        )
        events_task = asyncio.create_task(collect(events_ws, session_events))

        base = (await api.get(path)).json()
        assert base["id"] == ident["sessionId"] and base["namespace"] == "e2e"
        assert base["status"]["type"] == "executed"
        datetime.fromisoformat(base["status"]["executionTime"])

        async def answered() -> Any:
            state = (await api.get(path + "/extended")).json()
            threads = state["threads"]
            if threads and len(threads[0]["messages"]) >= 2:
                return state
            return None

        state = await until(answered, "the mention round trip")
        thread = state["threads"][0]
        assert thread["name"] == "arithmetic"
        assert thread["creatorName"] == "asker"
        assert thread["participants"] == ["asker", "answerer"]
        assert thread["state"] == {"state": "open"}
        first, second = thread["messages"][:2]
        assert (first["text"], first["senderName"], first["mentionNames"]) == (
            "6",
            "asker",
            ["answerer"],
        )
        assert (second["text"], second["senderName"], second["mentionNames"]) == (
            "42",
            "answerer",
            ["asker"],
        )
        assert second["threadId"] == thread["id"]
        datetime.fromisoformat(second["timestamp"])
        agents = {a["name"]: a for a in state["agents"]}
        assert agents["asker"]["status"]["type"] == "running"
        assert agents["answerer"]["links"] == ["asker"]

        # The environment each agent was launched with, from its captured output.
        async def asker_done() -> Any:
            lines = (await api.get(path + "/agent/asker/logs")).json()["lines"]
            return lines if log_line(lines, "answer ") else None

        asker_lines = await until(asker_done, "the asker's answer line")
        env = json.loads(log_line(asker_lines, "environment ") or "{}")
        assert env["CORAL_AGENT_ID"] == "asker"
        assert env["CORAL_SESSION_ID"] == ident["sessionId"]
        assert env["CORAL_RUNTIME_ID"] == "executable"
        assert env["CORAL_API_URL"] == drop_in.api
        assert env["CORAL_CONNECTION_URL"] == f"{drop_in.api}/mcp/v1/<secret>/mcp"
        assert env["secret_in_url"] == "True"
        assert "CORAL_PROMPT_SYSTEM" not in env  # only given when the request has a prompt
        assert json.loads(env["options"]) == {"QUESTION_FOR": "answerer", "NUMBER": "6"}
        assert log_line(asker_lines, "answer ") == "42 from answerer"
        assert log_line(asker_lines, "instruction ") == "# Coral"
        answerer_lines = (await api.get(path + "/agent/answerer/logs")).json()["lines"]
        assert log_line(answerer_lines, "environment ") == (
            "agent=answerer factor=7 sse=True prompt=Multiply what you are sent."
        )
        assert log_line(answerer_lines, "answered ") == "6 with 42"

        # The puppet API acts as the asker, through the same signed path.
        puppet = f"/api/v1/puppet/e2e/{ident['sessionId']}/asker/thread"
        sent = await api.post(
            puppet + "/message",
            json={"threadId": thread["id"], "content": "3", "mentions": ["answerer"]},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "Message sent successfully"
        assert sent.json()["message"]["senderName"] == "asker"
        made = await api.post(puppet, json={"threadName": "side", "participantNames": ["answerer"]})
        side = made.json()["thread"]
        assert side["participants"] == ["asker", "answerer"] and side["messages"] == []
        removed = await api.request(
            "DELETE",
            puppet + "/participant",
            json={"threadId": side["id"], "participantName": "answerer"},
        )
        assert removed.status_code == 200
        added = await api.post(
            puppet + "/participant", json={"threadId": side["id"], "participantName": "answerer"}
        )
        assert added.status_code == 200
        self_mention = await api.post(
            puppet + "/message",
            json={"threadId": side["id"], "content": "hi", "mentions": ["asker"]},
        )
        assert self_mention.status_code == 400

        async def puppet_answered() -> Any:
            state = (await api.get(path + "/extended")).json()
            texts = [m["text"] for m in state["threads"][0]["messages"]]
            return texts if "21" in texts else None

        assert await until(puppet_answered, "the answer to the puppet") == ["6", "42", "3", "21"]

        # The node's own APIs: the agents are directory agents, the thread is on the dashboard.
        node_api = drop_in.node.http
        async with httpx.AsyncClient(timeout=30) as plain:
            asker_did = agents["asker"]["did"]
            record = (await plain.get(f"{node_api}/v1/agents/{asker_did}")).json()
            assert record["agent"] == asker_did
            assert record["home_node"] == drop_in.node.node_id
            snapshot = (await plain.get(f"{node_api}/v1/dashboard/snapshot")).json()
        shown = {t["id"]: t for t in snapshot["threads"]["recent"]}
        assert thread["id"] in shown
        senders = {m["sender"] for m in shown[thread["id"]]["messages"]}
        assert {asker_did, agents["answerer"]["did"]} <= senders

        # DELETE stops both agents and ends the session.
        pids = [agents[n]["pid"] for n in ("asker", "answerer")]
        assert all(pid_alive(p) for p in pids)
        closed = await api.delete(path)
        assert closed.status_code == 200
        assert not any(pid_alive(p) for p in pids)
        gone = await api.get(path)
        assert gone.status_code == 404
        async with httpx.AsyncClient(timeout=30) as plain:  # session agents are deregistered
            retired = await plain.get(f"{node_api}/v1/agents/{asker_did}")
        assert retired.status_code == 404
        await asyncio.wait_for(webhook.arrived.wait(), 60)
        await until(
            lambda: _async(any(e["type"] == "session_closed" for e in server_events)),
            "session_closed on the server websocket",
        )
        await lsm.close()
        await events_ws.close()
        for task in (lsm_task, events_task):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

    body, headers = webhook.calls[0]
    assert (
        headers["X-Coral-Signature"]
        == hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    )
    assert verify_webhook(WEBHOOK_SECRET, body, headers, int(time.time()))
    assert not verify_webhook("other-secret", body, headers, int(time.time()))
    report = json.loads(body)
    assert report["namespaceState"]["name"] == "e2e"
    assert report["sessionState"]["type"] == "extended"
    ended = report["sessionState"]["state"]
    assert ended["threads"][0]["state"]["state"] == "closed"
    assert sorted(s["name"] for s in report["agentStats"]) == ["answerer", "asker"]

    kinds = [e["type"] for e in session_events]
    assert "thread_message_sent" in kinds and "thread_created" in kinds
    sent_texts = [
        e["message"]["text"] for e in session_events if e["type"] == "thread_message_sent"
    ]
    assert "21" in sent_texts
    assert "thread_participant_removed" in kinds and "thread_participant_added" in kinds
    assert kinds.count("runtime_stopped") == 2
    starts = [e for e in session_events if e["type"] == "agent_wait_start"]
    assert {"type": "mentions", "name": "answerer"} in [f for e in starts for f in e["filters"]]
    stops = [e for e in session_events if e["type"] == "agent_wait_stop"]
    assert any(e["name"] == "answerer" and e["message"]["text"] == "3" for e in stops)
    server_kinds = [e["type"] for e in server_events]
    assert server_kinds[:2] == ["namespace_created", "session_created"]
    assert {"session_running", "session_closing", "session_closed"} <= set(server_kinds)


async def _async(value: Any) -> Any:
    return value


async def test_the_readme_curl_command_starts_the_example_session(drop_in: DropIn):
    readme = (EXAMPLES / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("curl -s -X POST"))
    body = json.loads(command.split(" -d '", 1)[1].rstrip("'"))
    async with drop_in.client() as api:  # the README's node uses key dev-key on :5555
        created = await api.post("/api/v1/local/session", json=body)
        assert created.status_code == 200, created.text
        path = f"/api/v1/local/session/demo/{created.json()['sessionId']}"

        async def answered() -> Any:
            threads = (await api.get(path + "/extended")).json()["threads"]
            texts = [m["text"] for m in threads[0]["messages"]] if threads else []
            return texts if len(texts) >= 2 else None

        assert await until(answered, "the example's answer") == ["6", "42"]
        assert (await api.delete(path)).status_code == 200


async def test_the_rescan_timer_picks_up_an_agent_installed_after_start(drop_in: DropIn):
    folder = drop_in.late / "newcomer"
    folder.mkdir(parents=True)
    (folder / "coral-agent.toml").write_text(
        'edition = 4\n[agent]\nname = "newcomer"\nversion = "2.0.0"\n'
        '[runtimes.executable]\npath = "python3"\n'
    )
    async with drop_in.client() as api:

        async def listed() -> Any:
            sources = (await api.get("/api/v1/registry")).json()
            return {a["name"] for a in sources[0]["agents"]} >= {"newcomer", "asker"}

        await until(listed, "the newcomer in the registry")
        agent = (await api.get("/api/v1/registry/local/newcomer/2.0.0")).json()
        assert agent["info"]["identifier"]["version"] == "2.0.0"
