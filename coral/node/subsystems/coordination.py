"""Agent directory, coordination engine and the message gateway."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from coral.api.context import NodeContext
from coral.node.subsystems.base import Subsystem, wait_budget

if TYPE_CHECKING:
    from coral.node.daemon import Node


class CoordinationSubsystem(Subsystem):
    """Agent directory, coordination engine and the message gateway."""

    name = "coordination"

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.agents.directory import AgentDirectory
        from coral.api.grpc import coordination as grpc_coordination
        from coral.api.http import agents as http_agents
        from coral.api.http import coordination as http_coordination
        from coral.coordination.gateway import MessageGateway
        from coral.coordination.ratelimit import RateLimiter
        from coral.coordination.service import CoordinationService
        from coral.protocol.message import now_ms
        from coral.protocol.signing import sign_message
        from coral.store.agents_sqlite import SqliteAgentStore
        from coral.store.coordination_sqlite import SqliteCoordinationStore
        from coral.store.seen_sqlite import SqliteSeenStore

        agents = SqliteAgentStore(node.db)
        await agents.open()
        seen = SqliteSeenStore(node.db)
        await seen.open()
        self.seen = seen
        store = SqliteCoordinationStore(node.db)
        await store.migrate()
        ctx.coordination_store = store
        identity = ctx.identity
        ctx.directory = AgentDirectory(
            agents, identity, now_ms, ctx.verifier.limits.max_future_skew_ms
        )
        ctx.coordination = CoordinationService(
            store,
            node_id=identity.did,
            clock=now_ms,
            max_waits_total=wait_budget(node.config.max_open_waits),
            sign_event=lambda message: sign_message(message, identity),
        )
        rate = node.config.agent_message_rate
        limiter = RateLimiter(rate, 2 * rate, time.monotonic)
        ctx.gateway = MessageGateway(
            ctx.verifier,
            seen,
            ctx.coordination,
            ctx.directory,
            limiter=limiter,
            on_routed=ctx.metrics.messages_routed.inc,
        )
        directory = ctx.directory

        async def count_local_agents() -> None:
            # One count at a time; records stored meanwhile ask for one more pass,
            # so a burst of registrations costs a few counts, not one each.
            try:
                while counting["again"]:
                    counting["again"] = False
                    count = len(await directory.search(local_only=True))
                    ctx.metrics.agents_registered.set(count)
            finally:
                counting["running"] = False

        counting = {"again": True, "running": True}
        await count_local_agents()

        def on_record(record: Any) -> None:
            if record.home_node == identity.did:
                counting["again"] = True
                if not counting["running"]:
                    counting["running"] = True
                    task = asyncio.get_running_loop().create_task(count_local_agents())
                    self._counting.add(task)
                    task.add_done_callback(self._counting.discard)

        self._counting: set[asyncio.Task[None]] = set()
        directory.listeners.append(on_record)
        self.grpc_installers.append(grpc_coordination.install)
        self.http_installers += [http_agents.install, http_coordination.install]

    async def started(self, node: Node, ctx: NodeContext) -> None:
        from coral.protocol.message import now_ms

        engine = ctx.coordination
        assert engine is not None
        self.background(engine.run_timers())
        self.every(60.0, lambda: self.seen.prune(now_ms()))
