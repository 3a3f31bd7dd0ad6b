"""The node's subsystems, in start order.

A subsystem builds its services during ``setup`` (before servers start),
contributes gRPC/HTTP route installers, starts background work once the
servers listen, and closes in reverse order. ``build_subsystems`` is the
single place that decides what a node runs.

A *late* subsystem (``late = True``) is set up after the servers listen, so
its modules are not imported before the node answers ``/healthz``. Before the
servers start it only ``prepare``s: what must exist before any request does
(a waiting admission check, a gRPC servicer that waits), and it names the HTTP
paths its routes live under (``late_paths``). Requests to those paths, and
submits through the message gateway, wait until every late subsystem is set
up; ``started`` hooks, of early and late subsystems alike, run after that, in
start order, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from coral.api.context import NodeContext
from coral.api.grpc.server import ServiceInstaller
from coral.api.http.app import RouteInstaller
from coral.config import Config
from coral.node.leases import Lease, while_leading

if TYPE_CHECKING:
    from coral.node.daemon import Node

log = logging.getLogger("coral.node")


class Subsystem:
    """Default no-op hooks; subclasses override what they need."""

    name = "subsystem"
    #: Set up after the servers listen (see the module docstring).
    late = False
    #: A late subsystem's HTTP paths: every route it installs is one of these or below one.
    late_paths: tuple[str, ...] = ()
    #: Modules a late subsystem's setup imports: imported off the event loop first.
    late_modules: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.grpc_installers: list[ServiceInstaller] = []
        self.http_installers: list[RouteInstaller] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        """Build services and register route installers."""

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """A late subsystem, before the servers start: the wiring no request may miss.

        Cheap and import-free; gRPC and HTTP installers added here are installed
        with the early subsystems' (e.g. a middleware); those ``setup`` adds serve
        the routes under ``late_paths``.
        """

    async def started(self, node: Node, ctx: NodeContext) -> None:
        """Servers are listening; start background tasks."""

    async def stopping(self, node: Node, ctx: NodeContext) -> None:
        """Servers are about to stop: cancel background tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def close(self, node: Node, ctx: NodeContext) -> None:
        """Servers are stopped; release resources."""

    def background(self, job: Coroutine[Any, Any, None]) -> None:
        """Run a long-lived coroutine until stopping."""
        self._tasks.append(asyncio.create_task(job, name=f"{self.name}-background"))

    def leading(self, lease: Lease, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job()`` while this process holds ``lease``, until stopping (``while_leading``)."""
        self._tasks.append(
            asyncio.create_task(while_leading(lease, job), name=f"{self.name}-leading")
        )

    def every(
        self, seconds: float, job: Callable[[], Awaitable[object]], *, lease: Lease | None = None
    ) -> None:
        """Run ``job`` every ``seconds`` until stopping; failures are logged, not fatal.

        With ``lease``, a round is skipped while this process does not hold it
        (work that must run once per logical node; see ``coral.node.leases``).
        """

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                if lease is not None and not lease.held:
                    continue
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


def build_subsystems(config: Config) -> list[Subsystem]:
    """Fresh subsystem instances for one node, in start order."""
    from coral.node.subsystems.coordination import CoordinationSubsystem
    from coral.node.subsystems.dashboard import DashboardSubsystem
    from coral.node.subsystems.federation import FederationSubsystem
    from coral.node.subsystems.interop import InteropSubsystem
    from coral.node.subsystems.launcher import LauncherSubsystem
    from coral.node.subsystems.ledger import LedgerSubsystem
    from coral.node.subsystems.sessions import SessionsSubsystem
    from coral.node.subsystems.teams import TeamsSubsystem

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
