"""One thread with an SDK agent, an MCP agent and an external A2A agent (via its proxy)."""

from __future__ import annotations

import json
import time

from mcp import Client

from tests.api.interop.conftest import Echo, admin_post_async, create_mcp_agent
from tests.api.interop.reference_a2a import reference_server
from tests.support.nodeproc import NodeProcess


async def call(client: Client, tool: str, **args: object) -> dict[str, object]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return dict(json.loads(result.content[0].text))


async def test_sdk_mcp_and_external_a2a_agents_share_a_thread(
    interop_node: NodeProcess, echo: Echo
):
    async with reference_server() as external:
        status, proxy = await admin_post_async(
            interop_node, "/v1/admin/a2a-agents", {"card_url": external.card_url}
        )
        assert status == 201, proxy
        assert proxy["name"] == "reverser-agent"
        record = json.loads((await _get(interop_node, "/v1/agents/reverser-agent")).decode())
        assert record["manifest"]["capabilities"] == ["a2a-proxy"]

        mia = create_mcp_agent(interop_node, "mia")
        async with Client(mia["urls"]["streamable_http"]) as m:
            started = int(time.time() * 1000)
            created = await call(
                m,
                "coral_create_thread",
                threadName="mixed",
                participantNames=["echo", "reverser-agent"],
            )
            thread = created["thread"]
            assert thread["participants"] == ["mia", "echo", "reverser-agent"]
            await call(
                m,
                "coral_send_message",
                threadId=thread["id"],
                content="stressed",
                mentions=["reverser-agent"],
            )
            reply = await call(
                m,
                "coral_wait_for_agent",
                currentUnixTime=started,
                agentName="reverser-agent",
                maxWaitMs=20_000,
            )
            assert reply["status"] == "Message received"
            message = reply["message"]
            assert isinstance(message, dict)
            assert (message["text"], message["mentionNames"]) == ("desserts", ["mia"])
            await call(
                m,
                "coral_send_message",
                threadId=thread["id"],
                content="hello echo",
                mentions=["echo"],
            )
            from_echo = await call(
                m,
                "coral_wait_for_agent",
                currentUnixTime=started,
                agentName="echo",
                maxWaitMs=20_000,
            )
            echoed = from_echo["message"]
            assert isinstance(echoed, dict) and echoed["text"] == "echo: hello echo"

    status, body = await admin_post_async(
        interop_node,
        "/v1/admin/a2a-agents",
        {"card_url": "http://127.0.0.1:9/.well-known/agent-card.json"},
    )
    assert (status, body["reason"]) == (400, "a2a_card_unreachable")
    status, body = await admin_post_async(
        interop_node, "/v1/admin/a2a-agents", {"card_url": "ftp://x"}
    )
    assert (status, body["reason"]) == (400, "invalid_card_url")


async def _get(node: NodeProcess, path: str) -> bytes:
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(node.http + path)
        response.raise_for_status()
        return response.content
