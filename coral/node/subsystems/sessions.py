"""The coral-server drop-in subsystem: registry, sessions, /api/v1 and /ws/v1 routes.

Built after the interop subsystem (it uses the node-held MCP agents and the
MCP tools). It reads the coral-server ``config.toml`` (``coral_server_config``
or ``$CONFIG_FILE_PATH``, plus ``coral_server_overrides``); with a
``[network] bindPort`` it also serves the node's HTTP app on that address, so
coral-server clients keep their URL. A late subsystem
(``coral.node.subsystems.base``): the config is read when the node is built,
the rest is set up after the servers listen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from typing import TYPE_CHECKING, Any

from coral.api.context import NodeContext, need
from coral.node.subsystems import Subsystem

if TYPE_CHECKING:
    from coral.node.daemon import Node

log = logging.getLogger("coral.sessions")


def directory_name(graph_name: str) -> str:
    """A unique directory name for a session agent (graph names repeat across sessions)."""
    stem = re.sub(r"[^a-z0-9]+", "-", graph_name.lower()).strip("-")[:24] or "agent"
    return f"{stem}-{secrets.token_hex(3)}"


class HeldSessionAgentKeys:
    """Session agents as node-held MCP agents: own key, directory record, secret."""

    def __init__(self, held: Any) -> None:
        self.held = held

    async def create_session_agent(self, name: str, description: str) -> tuple[str, str]:
        """Create the agent; returns its did and its connection secret."""
        from coral.api.mcp.held_agents import MCP_KIND
        from coral.protocol.agent import AgentManifest

        manifest = AgentManifest(
            name=directory_name(name), description=description[:1024], endpoints=("mcp",)
        )
        agent, secret = await self.held.create(manifest, MCP_KIND, with_secret=True)
        assert secret is not None
        return agent.did, secret

    async def retire_session_agent(self, did: str) -> None:
        """Deregister the agent, forget its secret and delete its private key."""
        await self.held.retire(did)


class SessionsSubsystem(Subsystem):
    """coral-server's sessions, registry and runtime on this node."""

    name = "sessions"
    late = True
    late_paths = ("/api/v1", "/ws/v1")
    late_modules = (
        "coral.api.coralserver.custom_tools",
        "coral.api.coralserver.events",
        "coral.api.coralserver.puppet",
        "coral.api.coralserver.routes",
        "coral.sessions.registry",
        "coral.sessions.service",
    )

    def __init__(self, config: Any) -> None:
        """Read the coral-server config now, so a bad one stops the node before it opens anything.

        Raises ConfigError naming the bad key.
        """
        from coral.config import ConfigError
        from coral.sessions.config import CoralServerConfigError, load_coral_server_config

        super().__init__()
        env = dict(os.environ)
        if config.coral_server_config is not None:
            env["CONFIG_FILE_PATH"] = str(config.coral_server_config)
        try:
            self.server_config = load_coral_server_config(
                env, config.coral_server_overrides, max_wait_ms=config.mcp_max_wait_ms
            )
        except CoralServerConfigError as exc:
            raise ConfigError(f"coral-server config: {exc}") from None

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        """Read the coral-server config, scan the registry, build the session manager."""
        from coral.api.coralserver.custom_tools import AppClient
        from coral.api.coralserver.events import install_events
        from coral.api.coralserver.puppet import install_puppet
        from coral.api.coralserver.routes import AUTH_KEYS, SESSIONS, install_routes
        from coral.protocol.message import now_ms
        from coral.sessions.registry import AgentRegistry, coral_home_agents
        from coral.sessions.service import SessionManager, SessionServerSettings

        server = self.server_config
        patterns = list(server.local_agents)
        if server.include_coral_home_agents:
            patterns.append(str(coral_home_agents()))
        registry = AgentRegistry.scan(patterns)
        tools = need(ctx.mcp_tools, "mcp_tools")
        held = need(ctx.held_agents, "held_agents")
        self.apps = AppClient()
        self.manager = SessionManager(
            registry,
            need(ctx.coordination, "coordination"),
            HeldSessionAgentKeys(held),
            SessionServerSettings("", server.webhook_secret, server.default_wait_ms),
            self.apps.post_webhook,
            now_ms,
            tools.name_of,
        )
        tools.scopes = self.manager
        held.connection_listeners.append(self.manager.mark_connected)
        tools.custom_tool_caller = self.apps.post
        tools.custom_tool_secret = server.custom_tool_secret
        tools.max_wait_ms = server.max_wait_ms
        tools.default_wait_ms = server.default_wait_ms
        ctx.sessions = self.manager
        keys = [*server.auth_keys, ctx.admin_token]

        def install(app: Any, _ctx: NodeContext) -> None:
            app[SESSIONS] = self.manager
            app[AUTH_KEYS] = lambda: keys
            install_routes(app)
            install_puppet(app, tools)
            install_events(app)

        self.http_installers.append(install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        """Open the coral-server listener when configured; set the agents' API URL."""
        import dataclasses

        from aiohttp import web

        server = self.server_config
        api_url = ctx.http_address
        runner = getattr(node, "_http", None)
        if server.bind_port is not None and runner is not None:
            host = server.bind_address or ctx.config.host
            site = web.TCPSite(runner, host, server.bind_port)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            api_url = f"http://{local}:{port}"
            log.info("coral-server API listening on %s:%s", host, port)
        self.manager.settings = dataclasses.replace(self.manager.settings, api_url=api_url)
        if server.rescan_s > 0:
            registry = self.manager.registry
            self.every(server.rescan_s, lambda: asyncio.to_thread(registry.rescan))
        self.api_url = api_url

    async def stopping(self, node: Node, ctx: NodeContext) -> None:
        """End every session (stopping its agents) before the servers stop."""
        await self.manager.close_all()
        await self.apps.close()
        await super().stopping(node, ctx)
