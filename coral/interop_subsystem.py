"""The interop subsystem: A2A and MCP front doors for other vendors' agents.

It holds keys for agents that cannot sign for themselves (MCP agents, the
``a2a-gateway`` that carries A2A tasks into threads, proxies of external A2A
agents), installs the A2A routes and gRPC service, the MCP endpoints and the
admin routes that create such agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from coral.context import NodeContext
from coral.subsystems import Subsystem

log = logging.getLogger("coral.a2a")
#: Seconds between two runs of the A2A task retention policy.
RETENTION_EVERY_S = 60.0


class InteropSubsystem(Subsystem):
    """A2A inbound/outbound and MCP inbound, wired to the coordination engine."""

    name = "interop"

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        """Open the held-agent store and build both front doors (the A2A gateway agent is lazy)."""
        from coral.api.a2a.executor import CoralAgentExecutor, LazyGateway
        from coral.api.a2a.front_door import A2AFrontDoor
        from coral.api.a2a.outbound import A2AProxies
        from coral.api.a2a.tasks import RetentionPolicy, fail_interrupted
        from coral.api.http.host_guard import HostPolicy
        from coral.api.mcp import admin
        from coral.api.mcp.held_agents import HeldAgents
        from coral.api.mcp.server import McpFrontDoor
        from coral.api.mcp.tools import CoralTools
        from coral.store.a2a_sqlite import SqliteA2ATaskRecords
        from coral.store.wait_cursors_sqlite import SqliteWaitCursors

        directory = ctx.require("directory")
        engine = ctx.require("coordination")
        held = HeldAgents(
            node.db, ctx.config.keys_dir, ctx.identity, directory, ctx.require("gateway")
        )
        await held.open()
        self.gateway = LazyGateway(held, engine)
        a2a_config = ctx.config.a2a
        self.task_records = SqliteA2ATaskRecords(node.db)
        await self.task_records.open()
        self.retention = RetentionPolicy(a2a_config.task_retention_s, a2a_config.max_tasks)
        await self.retention.apply(self.task_records)
        interrupted = await fail_interrupted(self.task_records)
        if interrupted:
            log.info("A2A: %d tasks were running when the node stopped; marked failed", interrupted)
        self._retention_task: asyncio.Task[None] | None = None
        executor = CoralAgentExecutor(
            held,
            self.gateway,
            directory,
            self.task_records,
            max_content_bytes=ctx.verifier.limits.max_message_bytes // 2,
            reply_timeout_s=a2a_config.reply_timeout_s,
        )
        self.a2a = A2AFrontDoor(ctx, executor, self.task_records, a2a_config)
        cursors = SqliteWaitCursors(node.db)
        await cursors.open()
        cap = ctx.config.mcp_max_wait_ms
        tools = CoralTools(
            held, directory, engine, cursors=cursors, max_wait_ms=cap, default_wait_ms=cap
        )
        self.mcp = McpFrontDoor(
            held,
            tools,
            policy=HostPolicy.from_config(ctx.config),
            max_wait_ms=cap,
            sse_retry_ms=ctx.config.mcp_sse_retry_ms,
        )
        ctx.services["mcp_tools"] = tools
        self.proxies = A2AProxies(held, engine)
        ctx.services["held_agents"] = held
        ctx.services["a2a_proxies"] = self.proxies
        self.http_installers += [
            self.a2a.install_http,
            lambda app, _ctx: self.mcp.install(app),
            admin.installer(held, self.proxies),
        ]
        self.grpc_installers.append(self.a2a.install_grpc)

    async def started(self, node: Any, ctx: NodeContext) -> None:
        """Start the MCP session manager and the A2A proxies."""
        await self.mcp.start()
        await self.proxies.start()
        self._retention_task = asyncio.create_task(self._retain(), name="a2a-retention")

    async def _retain(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_EVERY_S)
            try:
                gone = await self.retention.apply(self.task_records)
            except Exception as exc:  # a busy disk must not stop the loop
                log.warning("A2A task retention failed: %s", exc)
                continue
            if gone:
                log.info("A2A task retention evicted %d tasks", gone)

    async def stopping(self, node: Any, ctx: NodeContext) -> None:
        """Stop background readers before the servers stop."""
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
        await self.mcp.stop()
        await self.proxies.stop()
        await self.a2a.close()
        await self.gateway.stop()
        await super().stopping(node, ctx)
