"""The node's optional subsystems, in start order.

A subsystem builds its services during ``setup`` (before servers start),
contributes gRPC/HTTP route installers, and closes in reverse order. The
list is the single place that decides what a node runs.
"""

from __future__ import annotations

from typing import Any

from coral.context import NodeContext


class Subsystem:
    """Default no-op hooks; subclasses override what they need."""

    name = "subsystem"

    def __init__(self) -> None:
        self.grpc_installers: list[Any] = []
        self.http_installers: list[Any] = []

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        """Build services and register route installers."""

    async def started(self, node: Any, ctx: NodeContext) -> None:
        """Servers are listening; start background tasks."""

    async def stopping(self, node: Any, ctx: NodeContext) -> None:
        """Servers are about to stop; wake waiters, stop background tasks."""

    async def close(self, node: Any, ctx: NodeContext) -> None:
        """Servers are stopped; release resources."""


def build_subsystems(config: Any) -> list[Subsystem]:
    """Fresh subsystem instances for one node, in start order."""
    return []
