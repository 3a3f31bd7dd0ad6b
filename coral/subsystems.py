"""The node's subsystems, in start order.

A subsystem builds its services during ``setup`` (before servers start),
contributes gRPC/HTTP route installers, starts background work once the
servers listen, and closes in reverse order. ``build_subsystems`` is the
single place that decides what a node runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from coral.context import NodeContext

log = logging.getLogger("coral.node")


class Subsystem:
    """Default no-op hooks; subclasses override what they need."""

    name = "subsystem"

    def __init__(self) -> None:
        self.grpc_installers: list[Any] = []
        self.http_installers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        """Build services and register route installers."""

    async def started(self, node: Any, ctx: NodeContext) -> None:
        """Servers are listening; start background tasks."""

    async def stopping(self, node: Any, ctx: NodeContext) -> None:
        """Servers are about to stop: cancel background tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def close(self, node: Any, ctx: NodeContext) -> None:
        """Servers are stopped; release resources."""

    def background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run a long-lived coroutine until stopping."""
        self._tasks.append(asyncio.create_task(job, name=f"{self.name}-background"))

    def every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` every ``seconds`` until stopping; failures are logged, not fatal."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    log.exception("%s: periodic job failed", self.name)

        self._tasks.append(asyncio.create_task(loop(), name=f"{self.name}-periodic"))


def wait_budget(configured: int) -> int:
    """The node-wide cap on open waits: ``configured``, or derived from RLIMIT_NOFILE.

    Each open wait holds a connection (a file descriptor). The derived budget
    leaves a quarter of the limit, at least 64 descriptors, for health checks,
    admin calls, peers and the database.
    """
    if configured > 0:
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 65_536
    return max(16, soft - max(64, soft // 4))


class CoordinationSubsystem(Subsystem):
    """Agent directory, coordination engine and the message gateway."""

    name = "coordination"

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        from coral.agents.directory import AgentDirectory
        from coral.api.grpc import coordination as grpc_coordination
        from coral.api.http import agents as http_agents
        from coral.api.http import coordination as http_coordination
        from coral.coordination.service import CoordinationService
        from coral.gateway import MessageGateway
        from coral.protocol.message import now_ms
        from coral.protocol.signing import sign_message
        from coral.ratelimit import RateLimiter
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
        ctx.services["coordination_store"] = store
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
            ctx.verifier, seen, ctx.coordination, ctx.directory, ctx.metrics, limiter
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

    async def started(self, node: Any, ctx: NodeContext) -> None:
        from coral.protocol.message import now_ms

        engine = ctx.coordination
        assert engine is not None
        self.background(engine.run_timers())
        self.every(60.0, lambda: self.seen.prune(now_ms()))


def build_subsystems(config: Any) -> list[Subsystem]:
    """Fresh subsystem instances for one node, in start order."""
    from coral.api.dashboard import DashboardSubsystem
    from coral.federation_subsystem import FederationSubsystem
    from coral.interop_subsystem import InteropSubsystem
    from coral.launcher_subsystem import LauncherSubsystem
    from coral.ledger_subsystem import LedgerSubsystem
    from coral.sessions_subsystem import SessionsSubsystem
    from coral.teams_subsystem import TeamsSubsystem

    return [
        CoordinationSubsystem(),
        LedgerSubsystem(),
        FederationSubsystem(),
        TeamsSubsystem(),
        InteropSubsystem(),
        SessionsSubsystem(config),
        DashboardSubsystem(),
        LauncherSubsystem(),
    ]
