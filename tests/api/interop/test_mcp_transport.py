"""The MCP transport layer on a real node: both protocol eras, primed streams, Host/Origin, errors.

The real mcp 2.x client drives what it can express; raw HTTP covers what it
cannot (a foreign Host or Origin, the SSE bytes of a primed stream, a
reconnection with Last-Event-ID, the absence of a session id).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from tests.api.interop.conftest import create_mcp_agent
from tests.support.nodeproc import NodeProcess

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
RETRY_MS = 750
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node with an extra allowed host, a short wait cap and a distinctive SSE retry hint."""
    env = {
        "CORAL_ALLOWED_HOSTS": "node.example.test",
        "CORAL_MCP_MAX_WAIT_MS": "1500",
        "CORAL_MCP_SSE_RETRY_MS": str(RETRY_MS),
    }
    proc = NodeProcess(tmp_path_factory.mktemp("mcp-transport") / "node", env=env).start()
    yield proc
    proc.kill()


def sse_events(text: str) -> list[dict[str, str]]:
    """Parse an SSE body into events (field -> value; ``data`` joined)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            event[name] = value[1:] if value.startswith(" ") else value
        if event:
            events.append(event)
    return events


def rpc(request_id: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        body["params"] = params
    return body


async def legacy_session(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """Initialize a 2025-11-25 session by hand; returns the headers later requests carry."""
    init = await http.post(
        url,
        headers=ACCEPT,
        json=rpc(
            1,
            "initialize",
            {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        ),
    )
    assert init.status_code == 200
    headers = {**ACCEPT, "mcp-session-id": init.headers["mcp-session-id"]}
    headers["mcp-protocol-version"] = LEGACY
    notified = await http.post(
        url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
    )
    assert notified.status_code == 202
    return headers


async def test_current_clients_negotiate_the_stateless_revision(node: NodeProcess):
    agent = create_mcp_agent(node, "modern")
    url = agent["urls"]["streamable_http"]
    async with Client(url) as client:  # mode="auto": server/discover first
        assert client.protocol_version == MODERN
        assert "coral_wait_for_mention" in {t.name for t in (await client.list_tools()).tools}
    async with Client(url, mode=MODERN) as pinned:
        state = (await pinned.read_resource("coral://state")).contents[0].text
        assert "You are an agent named modern." in state  # coral-server's markdown form
    async with Client(url, mode="legacy") as legacy:
        assert legacy.protocol_version == LEGACY


async def test_stateless_requests_need_no_session_and_carry_their_version_in_meta(
    node: NodeProcess,
):
    url = create_mcp_agent(node, "stateless")["urls"]["streamable_http"]
    headers = {**ACCEPT, "mcp-protocol-version": MODERN}
    async with httpx.AsyncClient(timeout=30) as http:
        discover = await http.post(
            url,
            headers={**headers, "mcp-method": "server/discover"},
            json=rpc(1, "server/discover", {"_meta": ENVELOPE}),
        )
        assert discover.status_code == 200
        assert "mcp-session-id" not in discover.headers
        result = discover.json()["result"]
        assert MODERN in result["supportedVersions"]
        assert {"tools", "resources"} <= set(result["capabilities"])
        # Each request stands alone: no initialize, no session id, the envelope in _meta.
        call = await http.post(
            url,
            headers={**headers, "mcp-method": "tools/call", "mcp-name": "coral_wait_for_mention"},
            json=rpc(
                2,
                "tools/call",
                {
                    "name": "coral_wait_for_mention",
                    "arguments": {"currentUnixTime": 0, "maxWaitMs": 100},
                    "_meta": ENVELOPE,
                },
            ),
        )
        assert call.status_code == 200
        assert "mcp-session-id" not in call.headers
        reply = call.json()["result"]
        assert reply["resultType"] == "complete"
        assert reply["structuredContent"]["status"] == "Timeout reached"
        assert "message" not in reply["structuredContent"]


async def test_legacy_post_streams_open_with_a_priming_event_and_retry(node: NodeProcess):
    url = create_mcp_agent(node, "primed")["urls"]["streamable_http"]
    async with httpx.AsyncClient(timeout=30) as http:
        headers = await legacy_session(http, url)
        listed = await http.post(url, headers=headers, json=rpc(2, "tools/list"))
        assert listed.headers["content-type"].startswith("text/event-stream")
        priming, answer = sse_events(listed.text)
        assert priming["data"] == "" and priming["id"]
        assert priming["retry"] == str(RETRY_MS)
        assert json.loads(answer["data"])["id"] == 2
        # A client that lost the stream after the priming event gets the rest on reconnect.
        resumed_headers = {**headers, "Accept": "text/event-stream", "last-event-id": priming["id"]}
        async with http.stream("GET", url, headers=resumed_headers) as resumed:
            assert resumed.status_code == 200
            replayed: dict[str, Any] = {}
            with anyio.fail_after(20):
                buffered = ""
                async for chunk in resumed.aiter_text():
                    buffered += chunk
                    datas = [e["data"] for e in sse_events(buffered) if e.get("data")]
                    if datas:
                        replayed = json.loads(datas[0])
                        break
        assert replayed["id"] == 2 and "tools" in replayed["result"]


async def test_unknown_tools_and_resources_are_protocol_errors_in_both_eras(node: NodeProcess):
    url = create_mcp_agent(node, "errors")["urls"]["streamable_http"]
    for mode in ("auto", "legacy"):
        async with Client(url, mode=mode) as client:
            with pytest.raises(MCPError) as resource:
                await client.read_resource("coral://no-such-resource")
            assert resource.value.code == -32002
            assert resource.value.data == {"uri": "coral://no-such-resource"}
            with pytest.raises(MCPError) as tool:
                await client.call_tool("no_such_tool", {})
            assert tool.value.code == -32602
            # A known tool refusing its input stays a tool result the model can read.
            refused = await client.call_tool("coral_send_message", {"threadId": "x"})
            assert refused.is_error


async def test_waits_are_shortened_to_the_configured_cap(node: NodeProcess):
    url = create_mcp_agent(node, "capped")["urls"]["streamable_http"]
    async with Client(url) as client:
        # Asks for a minute; the node's cap (1.5 s) answers long before the guard below.
        with anyio.fail_after(40):
            result = await client.call_tool(
                "coral_wait_for_mention", {"currentUnixTime": 0, "maxWaitMs": 60_000}
            )
        timed_out = json.loads(result.content[0].text)
        assert timed_out["status"] == "Timeout reached" and "message" not in timed_out


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Host", "attacker.example"),
        ("Host", "attacker.example:7421"),
        ("Origin", "http://attacker.example"),
        ("Origin", "null"),
    ],
)
async def test_foreign_host_or_origin_is_403_on_every_mcp_endpoint(
    node: NodeProcess, header: str, value: str
):
    agent = create_mcp_agent(node, f"guarded-{abs(hash((header, value))) % 10**6}")
    streamable, sse = agent["urls"]["streamable_http"], agent["urls"]["sse"]
    messages = sse.rsplit("/", 1)[0] + "/messages/?session_id=0"
    bad = {header: value}
    init = rpc(1, "initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}})
    modern = rpc(1, "server/discover", {"_meta": ENVELOPE})
    async with httpx.AsyncClient(timeout=30) as http:
        attempts = [
            http.post(streamable, headers={**ACCEPT, **bad}, json=init),
            http.post(
                streamable, headers={**ACCEPT, "mcp-protocol-version": MODERN, **bad}, json=modern
            ),
            http.get(streamable, headers={"Accept": "text/event-stream", **bad}),
            http.delete(streamable, headers=bad),
            http.get(sse, headers={"Accept": "text/event-stream", **bad}),
            http.post(messages, headers={**ACCEPT, **bad}, json=init),
        ]
        for attempt in attempts:
            refused = await attempt
            assert refused.status_code == 403, (refused.request.method, refused.request.url)
            assert refused.json()["error"]["code"] == -32600
            assert value.split(":")[0] in refused.json()["error"]["message"]


async def test_local_and_configured_names_pass_the_check(node: NodeProcess):
    agent = create_mcp_agent(node, "welcome")
    url = agent["urls"]["streamable_http"]
    port = url.split("//", 1)[1].split("/", 1)[0].split(":")[1]
    init = rpc(1, "initialize", {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {}})
    async with httpx.AsyncClient(timeout=30) as http:
        for host, origin in [
            (f"localhost:{port}", "http://localhost:6274"),  # e.g. the MCP Inspector's page
            (f"node.example.test:{port}", "https://node.example.test"),  # allowed_hosts
            (f"[::1]:{port}", None),
        ]:
            headers = {**ACCEPT, "Host": host} | ({"Origin": origin} if origin else {})
            accepted = await http.post(url, headers=headers, json=init)
            assert accepted.status_code == 200, (host, origin, accepted.text)
    # The real clients send the loopback Host they connected to, on both transports.
    async with Client(sse_client(agent["urls"]["sse"])) as client:
        assert (await client.list_resources()).resources


def test_only_waits_inside_the_schema_are_shortened_to_the_cap():
    from coral.api.mcp.server import cap_waits

    assert cap_waits({"maxWaitMs": 60_000, "x": 1}, 1500) == {"maxWaitMs": 1500, "x": 1}
    assert cap_waits({"timeoutMs": 30_000}, 1500) == {"timeoutMs": 1500}
    assert cap_waits({"maxWaitMs": 900}, 1500) == {"maxWaitMs": 900}
    # Out-of-schema values reach the tool unchanged, which refuses them as before.
    assert cap_waits({"maxWaitMs": 600_000}, 1500) == {"maxWaitMs": 600_000}
    assert cap_waits({"maxWaitMs": True}, 1500) == {"maxWaitMs": True}
