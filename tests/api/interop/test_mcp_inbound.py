"""The real mcp client (Streamable HTTP auto/legacy, SSE) driving MCP agents on a real node."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import typer
from mcp import Client
from mcp.client.sse import sse_client
from typer.testing import CliRunner

from coral.cli.interop import mcp_app
from tests.api.interop.conftest import admin_post, create_mcp_agent
from tests.support.nodeproc import NodeProcess

CORAL_TOOLS = {
    "coral_create_thread",
    "coral_close_thread",
    "coral_add_participant",
    "coral_remove_participant",
    "coral_send_message",
    "coral_wait_for_message",
    "coral_wait_for_mention",
    "coral_wait_for_agent",
}
LEGACY_TOOLS = {
    "list_agents",
    "create_thread",
    "add_participant",
    "remove_participant",
    "close_thread",
    "send_message",
    "wait_for_mentions",
}


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return dict(json.loads(result.content[0].text))


async def tool_error(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """coral-server's tool error: the message as text, ``{"error": message}`` structured."""
    result = await client.call_tool(tool, args)
    assert result.is_error
    error = dict(result.structured_content or {})
    assert error["error"] == result.content[0].text
    return error


def state_json(text: str, section: str) -> Any:
    """The JSON block under ``# <section>`` of the coral://state markdown."""
    block = text.split(f"# {section}", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize("transport", ["auto", "legacy", "sse"])
async def test_two_mcp_agents_create_a_thread_and_mention_each_other(
    interop_node: NodeProcess, transport: str
):
    alice = create_mcp_agent(interop_node, f"alice-{transport}")
    bob = create_mcp_agent(interop_node, f"bob-{transport}")
    if transport == "sse":
        a_client = Client(sse_client(alice["urls"]["sse"]), mode="legacy")
        b_client = Client(sse_client(bob["urls"]["sse"] + "/"))  # trailing-slash variant, auto
    else:
        a_client = Client(alice["urls"]["streamable_http"], mode=transport)
        b_client = Client(bob["urls"]["streamable_http"], mode=transport)
    async with a_client as a, b_client as b:
        if transport == "legacy":
            assert a.protocol_version == "2025-11-25"
        names = {t.name for t in (await a.list_tools()).tools}
        assert CORAL_TOOLS | LEGACY_TOOLS <= names
        started = now_ms()
        created = await call(
            a, "coral_create_thread", threadName="plan", participantNames=[bob["name"]]
        )
        assert set(created) == {"thread"}
        thread = created["thread"]
        assert thread["state"] == {"state": "open"} and thread["messages"] == []
        assert thread["participants"] == [alice["name"], bob["name"]]
        assert thread["creatorName"] == alice["name"]
        sent = await call(
            a,
            "coral_send_message",
            threadId=thread["id"],
            content="bob, go",
            mentions=[bob["name"]],
        )
        assert sent["message"]["mentionNames"] == [bob["name"]]
        got = await call(b, "coral_wait_for_mention", currentUnixTime=started, maxWaitMs=10_000)
        assert got["status"] == "Message received"
        assert (got["message"]["text"], got["message"]["senderName"]) == ("bob, go", alice["name"])
        await call(
            b,
            "coral_send_message",
            threadId=thread["id"],
            content="done, alice",
            mentions=[alice["name"]],
        )
        back = await call(
            a,
            "coral_wait_for_agent",
            currentUnixTime=started,
            agentName=bob["name"],
            maxWaitMs=10_000,
        )
        assert back["message"]["text"] == "done, alice"
        # Each message is delivered once: the next wait times out.
        again = await call(b, "coral_wait_for_mention", currentUnixTime=started, maxWaitMs=200)
        assert again["status"] == "Timeout reached" and "message" not in again
        # A re-issued wait with the earlier cursor gets the same message again (nothing lost).
        replay = await call(
            b,
            "coral_wait_for_mention",
            currentUnixTime=started,
            maxWaitMs=5_000,
            afterCursor=got["cursor"] - 1,
        )
        assert replay["message"]["id"] == got["message"]["id"]
        text = (await b.read_resource("coral://state")).contents[0].text
        assert f"You are an agent named {bob['name']}." in text
        threads = state_json(text, "Threads and messages")
        texts = [m["messageText"] for m in threads[0]["messages"]]
        assert texts == ["bob, go", "done, alice"]
        closed = await call(a, "coral_close_thread", threadId=thread["id"], summary="finished")
        assert closed == {"message": f"Successfully closed thread {thread['id']}"}


async def test_legacy_tool_names_and_instruction_resource(interop_node: NodeProcess):
    carol = create_mcp_agent(interop_node, "carol")
    dave = create_mcp_agent(interop_node, "dave")
    async with (
        Client(carol["urls"]["streamable_http"]) as c,
        Client(dave["urls"]["streamable_http"]) as d,
    ):
        listed = await call(c, "list_agents", includeDetails=True)
        names = {a["name"] for a in listed["agents"]}
        assert {"carol", "dave"} <= names
        assert "a2a-gateway" not in names  # registered only once A2A is used
        thread = await call(c, "create_thread", threadName="old", participantIds=["dave"])
        await call(c, "send_message", threadId=thread["id"], content="ping", mentions=["dave"])
        mentions = await call(d, "wait_for_mentions", timeoutMs=5_000)
        assert [m["text"] for m in mentions["messages"]] == ["ping"]
        instruction = await c.read_resource("coral://instruction")
        assert "coral_wait_for_mention" in instruction.contents[0].text


async def test_bad_tool_arguments_and_refusals_are_tool_errors(interop_node: NodeProcess):
    erin = create_mcp_agent(interop_node, "erin")
    async with Client(erin["urls"]["streamable_http"], mode="legacy") as e:
        missing = await tool_error(e, "coral_send_message", threadId="x")
        assert missing["reason"] == "invalid_tool_arguments"
        assert "content" in missing["error"]
        typed = await tool_error(e, "coral_wait_for_mention", currentUnixTime="now", maxWaitMs=5)
        assert typed["reason"] == "invalid_tool_arguments"
        no_wait = await tool_error(e, "coral_wait_for_message", currentUnixTime=0, maxWaitMs=0)
        assert no_wait["reason"] == "invalid_tool_arguments"
        unknown_agent = await tool_error(
            e, "coral_create_thread", threadName="t", participantNames=["nobody-here"]
        )
        assert unknown_agent["reason"] == "agent_not_registered"
        no_thread = await tool_error(e, "coral_send_message", threadId="missing", content="hi")
        assert no_thread["reason"] == "thread_not_found"
        # An unknown tool is a protocol error (-32602): tests/api/interop/test_mcp_transport.py
        created = await call(e, "coral_create_thread", threadName="big", participantNames=[])
        huge = await tool_error(
            e, "coral_send_message", threadId=created["thread"]["id"], content="x" * 300_000
        )
        assert huge["reason"] == "too_large"


async def test_wrong_secret_is_401_and_malformed_json_rpc_is_an_error(interop_node: NodeProcess):
    frank = create_mcp_agent(interop_node, "frank")
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/mcp/v1/not-a-secret/mcp", "/mcp/v1/not-a-secret/sse"):
            response = await http.request(
                "POST" if path.endswith("mcp") else "GET",
                interop_node.http + path,
                headers=headers,
                content=b"{}",
            )
            assert response.status_code == 401
            assert "frank" not in response.text
        url = frank["urls"]["streamable_http"]
        garbage = await http.post(url, headers=headers, content=b'{"jsonrpc": "2.0", "id": 1,')
        assert garbage.status_code == 400
        assert garbage.json()["error"]["code"] == -32700
        not_rpc = await http.post(url, headers=headers, content=b'{"hello": "world"}')
        assert not_rpc.status_code == 400 and "error" in not_rpc.json()


def test_admin_route_needs_the_token_and_a_valid_unique_name(interop_node: NodeProcess):
    status, body = admin_post(interop_node, "/v1/admin/mcp-agents", {"name": "x"}, token="wrong")
    assert status == 401
    status, body = admin_post(interop_node, "/v1/admin/mcp-agents", {"name": "Not Valid!"})
    assert (status, body["reason"]) == (400, "invalid_agent")
    create_mcp_agent(interop_node, "gina")
    status, body = admin_post(interop_node, "/v1/admin/mcp-agents", {"name": "gina"})
    assert (status, body["reason"]) == (409, "agent_name_taken")
    keys = interop_node.data_dir / "keys" / "mcp" / "gina.key"
    assert keys.stat().st_mode & 0o777 == 0o600


def test_cli_creates_an_agent_and_prints_its_urls(interop_node: NodeProcess):
    # Mounted the way coral/cli.py mounts it: coral-node mcp create NAME
    cli = typer.Typer()
    cli.add_typer(mcp_app, name="mcp")
    data_dir = str(interop_node.data_dir)
    result = CliRunner().invoke(cli, ["mcp", "create", "hank", "--data-dir", data_dir, "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["urls"]["streamable_http"].startswith(interop_node.http + "/mcp/v1/")
    assert created["urls"]["sse"].endswith("/sse")
    again = CliRunner().invoke(cli, ["mcp", "create", "hank", "--data-dir", data_dir])
    assert again.exit_code == 1
