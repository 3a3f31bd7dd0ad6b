"""The SDK client's typed errors: a missing node is ``NodeUnreachable``, not an aiohttp error."""

from __future__ import annotations

import socket

import pytest

from coral.protocol.identity import Identity
from coral_sdk import Agent, AgentManifest, CoralClient, NodeUnreachable


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_call_to_no_node_raises_node_unreachable_naming_the_url():
    url = f"http://127.0.0.1:{closed_port()}"
    async with CoralClient(url, Identity.generate()) as client:
        with pytest.raises(NodeUnreachable) as caught:
            await client.node_info()
    assert caught.value.url == url
    assert str(caught.value).startswith(f"node unreachable at {url} (")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ConnectionError)


async def test_sse_events_to_no_node_raise_node_unreachable():
    url = f"http://127.0.0.1:{closed_port()}"
    async with CoralClient(url, Identity.generate()) as client:
        with pytest.raises(NodeUnreachable):
            async for _ in client.events():
                pass


async def test_agent_run_without_a_node_raises_and_closes_its_client():
    url = f"http://127.0.0.1:{closed_port()}"
    agent = Agent(url, identity=Identity.generate(), manifest=AgentManifest(name="lonely"))
    with pytest.raises(NodeUnreachable):
        await agent.run()
    assert not agent.ready.is_set()
    assert agent.client._session is None


async def test_a_running_node_is_reachable(node):
    async with CoralClient(node.http, Identity.generate()) as client:
        assert (await client.node_info()).node_id == node.node_id
