"""Shared fixtures: real node processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nodeproc import NodeProcess


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[callable]:
    """Start nodes in separate data dirs; every node is killed at teardown."""
    started: list[NodeProcess] = []

    def start(name: str = "node", extra_args: list[str] | None = None, **env: str) -> NodeProcess:
        node = NodeProcess(tmp_path / name, extra_args or [], env)
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.kill()


@pytest.fixture
def node(node_factory) -> NodeProcess:
    return node_factory("node")
