"""The composition root: the one place that knows every part of a node.

``Node`` (in ``coral.node.daemon``) builds the node from a ``Config``: keys,
logging, metrics, the database, and the subsystems in start order
(``coral.node.subsystems``). Nothing outside this package wires services
together; adapters in ``coral.api`` receive the typed services they call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coral.node.daemon import Node

__all__ = ["Node"]


def __getattr__(name: str) -> Any:
    # Lazy: ``coral.node.keys`` or ``coral.node.eventloop`` must not pull in
    # gRPC and aiohttp just because they live in this package.
    if name == "Node":
        from coral.node.daemon import Node

        return Node
    raise AttributeError(f"module 'coral.node' has no attribute {name!r}")
