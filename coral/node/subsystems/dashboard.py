"""The dashboard as a node subsystem: routes, request ids, rate sampling, the feed.

It runs last, after every other subsystem has put its services in the
context, so each panel can tell whether its source exists. A late subsystem
(``coral.node.subsystems.base``): only the request-id middleware is installed
before the servers start; the dashboard itself is set up after they listen.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from coral.api.context import NodeContext
from coral.node.subsystems import Subsystem

if TYPE_CHECKING:
    from coral.api.dashboard.ports import DashboardReads
    from coral.node.daemon import Node

#: Seconds between rate samples (each adds one point to every chart).
RATE_INTERVAL_S = 1.0
#: Seconds between snapshot rebuilds while a browser watches: at most two pushes a second.
FEED_INTERVAL_S = 0.5


async def dashboard_reads(node: Node) -> DashboardReads:
    """Where the dashboard reads: the database that holds each component's tables.

    With every store on PostgreSQL, the shared database (so all replicas of one
    node show the same); with ``database_stores = "ledger"``, threads and teams
    from the SQLite file and the ledger from PostgreSQL; else the SQLite files.
    PostgreSQL reads go through the node's shared pool (``Node.postgres_pool``).

    Raises:
        OSError, asyncpg.PostgresError: the node's PostgreSQL pool could not open.
    """
    from coral.node.subsystems.coordination import on_postgres
    from coral.node.subsystems.ledger import ledger_db_path
    from coral.store.dashboard_sqlite import SqliteDashboardReads
    from coral.store.postgres import is_postgres_url

    config = node.config
    if on_postgres(config):
        from coral.store.dashboard_postgres import PostgresDashboardReads

        return PostgresDashboardReads(pool=await node.postgres_pool())
    local = SqliteDashboardReads(node.db, ledger_db_path(config))
    if is_postgres_url(config.database_url):
        from coral.store.dashboard_postgres import PostgresDashboardReads, SplitDashboardReads

        return SplitDashboardReads(local, PostgresDashboardReads(pool=await node.postgres_pool()))
    return local


class DashboardSubsystem(Subsystem):
    """Serves the operator dashboard at ``/`` and tags HTTP requests with ids."""

    name = "dashboard"
    late = True
    late_paths = ("/", "/dashboard", "/v1/dashboard")
    late_modules = (
        "coral.api.dashboard.feed",
        "coral.api.dashboard.rates",
        "coral.api.dashboard.routes",
        "coral.api.dashboard.snapshot",
        "coral.store.dashboard_sqlite",
    )

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Tag every HTTP request with an id (a middleware: it must be there from the start)."""
        from coral.api.http import request_ids

        self.http_installers.append(request_ids.install)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        """Build the snapshot builder and feed; register the routes."""
        from coral.api.dashboard import routes
        from coral.api.dashboard.feed import SnapshotFeed
        from coral.api.dashboard.rates import RateSampler
        from coral.api.dashboard.snapshot import SnapshotBuilder

        self.rates = RateSampler(ctx.metrics.registry, time.monotonic)
        self.reads = await dashboard_reads(node)
        self.builder = SnapshotBuilder(ctx, self.reads, self.rates)
        self.feed = SnapshotFeed(self.builder.build)
        builder, feed = self.builder, self.feed
        self.http_installers.append(lambda app, c: routes.install(app, c, builder, feed))

    async def started(self, node: Node, ctx: NodeContext) -> None:
        """Sample rates and refresh the feed in the background."""
        self.rates.sample()
        self.every(RATE_INTERVAL_S, self.rates.sample_async)
        self.every(FEED_INTERVAL_S, self.feed.refresh)

    async def stopping(self, node: Node, ctx: NodeContext) -> None:
        """End open event streams so the HTTP server need not wait out its grace period."""
        self.feed.close()
        await super().stopping(node, ctx)

    async def close(self, node: Node, ctx: NodeContext) -> None:
        """Close the dashboard's read-only connections."""
        await self.reads.close()
