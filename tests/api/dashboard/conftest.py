"""A real node started in the test's own event loop, for the dashboard's HTTP tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from coral.api.context import NodeContext
from coral.config import Config
from coral.node import Node

StartNode = Callable[..., Awaitable[tuple[Node, NodeContext]]]


@pytest.fixture
async def start_node(tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start in-process nodes on free ports (``host`` selectable); all stop at teardown."""
    nodes: list[Node] = []

    async def start(name: str = "node", host: str = "127.0.0.1") -> tuple[Node, NodeContext]:
        node = Node(Config(data_dir=tmp_path / name, host=host, grpc_port=0, http_port=0))
        nodes.append(node)
        return node, await node.start()

    yield start
    for node in reversed(nodes):
        await node.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client session."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session
