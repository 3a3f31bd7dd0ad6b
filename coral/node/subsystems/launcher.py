"""The launcher subsystem: wires ``coral.sessions.launcher.AgentLauncher`` into the node.

The launcher itself (manifests, child processes, restarts) lives in
``coral/sessions/launcher.py``; its admin routes in ``coral/api/http/launcher.py``.
A late subsystem (``coral.node.subsystems.base``): set up after the servers listen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.api.context import NodeContext
from coral.node.subsystems import Subsystem

if TYPE_CHECKING:
    from coral.node.daemon import Node


class LauncherSubsystem(Subsystem):
    """Owns the AgentLauncher, its admin routes, and stopping children on shutdown."""

    name = "launcher"
    late = True
    late_paths = ("/v1/admin/launch", "/v1/admin/launched")
    late_modules = ("coral.api.http.launcher", "coral.sessions.launcher")

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        """Build the launcher (its node URL is filled in once the HTTP server listens)."""
        from coral.api.http import launcher as http_launcher
        from coral.sessions.launcher import AgentLauncher

        data_dir = ctx.config.data_dir
        self.launcher = AgentLauncher("", ctx.config.keys_dir / "agents", data_dir / "launched")
        ctx.launcher = self.launcher
        self.http_installers.append(http_launcher.install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        """Children connect to the address the HTTP server actually bound."""
        self.launcher.node_url = ctx.http_address

    async def stopping(self, node: Node, ctx: NodeContext) -> None:
        """Stop every launched agent before the servers go away."""
        await self.launcher.stop_all()
        await super().stopping(node, ctx)
