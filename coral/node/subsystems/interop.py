"""The interop subsystem: A2A and MCP front doors for other vendors' agents.

It holds keys for agents that cannot sign for themselves (MCP agents, the
``a2a-gateway`` that carries A2A tasks into threads, proxies of external A2A
agents), installs the A2A routes and gRPC service, the MCP endpoints and the
admin routes that create such agents.

The a2a-sdk and mcp packages take longer to import than the rest of the node
together, and nothing needs them before the first A2A or MCP request. So the
node starts serving without them: this subsystem installs one HTTP fallback
route and one gRPC generic handler, loads the front doors in the background
once the node is up, and until then holds any A2A/MCP request until they are
ready (``coral.api.lazy``). It is also a late subsystem
(``coral.node.subsystems.base``): those entry points are installed before the
servers start, the held agents and MCP tools are set up after they listen.

Held agents (records and keys), MCP wait cursors and A2A tasks live in the
node's SQLite file, or, when the node's stores are on PostgreSQL
(``on_postgres``), in PostgreSQL on the node's shared pool
(``Node.postgres_pool``): replicas of one node then hold the same agents with the same keys,
read each other's tasks, and resume each other's waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from coral.api.context import NodeContext, need
from coral.api.lazy import LazyGrpcServices, LazyRoutes, RecordingServer
from coral.node.subsystems import Subsystem
from coral.node.subsystems.coordination import on_postgres

if TYPE_CHECKING:
    from coral.api.a2a.tasks import A2ATaskRecords
    from coral.api.mcp.held_agents import HeldAgentRecords
    from coral.api.mcp.held_keys import HeldKeys
    from coral.api.mcp.tools import WaitCursors
    from coral.node.daemon import Node

log = logging.getLogger("coral.a2a")
#: Seconds between two runs of the A2A task retention policy.
RETENTION_EVERY_S = 60.0
#: On PostgreSQL, seconds between two checks that this replica still holds its runner lock.
RUNNER_CHECK_S = 5.0
#: On PostgreSQL, seconds between two looks for A2A proxies other replicas made.
PROXY_SYNC_S = 10.0
#: On PostgreSQL, how long a claim to forward a proxy's message is kept (milliseconds).
FORWARD_CLAIM_KEEP_MS = 24 * 3600 * 1000

#: Modules the front doors need, imported off the event loop before they are built.
HEAVY_MODULES = (
    "coral.api.a2a.executor",
    "coral.api.a2a.front_door",
    "coral.api.a2a.outbound",
    "coral.api.a2a.tasks",
    "coral.api.mcp.admin",
    "coral.api.mcp.server",
    "coral.api.mcp.tools",
    "coral.store.a2a_sqlite",
)
#: gRPC services the A2A front door adds (their names are needed before it loads).
A2A_GRPC_SERVICES = ["lf.a2a.v1.A2AService", "a2a.v1.A2AService"]


#: a2a-sdk wraps every request-handler and task-store call in an OpenTelemetry span,
#: configured once, when it is imported. The node installs no tracer, so those spans
#: cost a tenth of an A2A request's time and record nothing: they are off unless the
#: operator's environment sets this variable (``true`` keeps them).
A2A_SDK_TRACING_ENV = "OTEL_INSTRUMENTATION_A2A_SDK_ENABLED"


#: Packages the front doors need, checked (not imported) at setup: a broken install
#: fails the start with one clear line instead of failing later in the background.
REQUIRED_PACKAGES = ("a2a", "mcp", "mcp_types", "httpx", "starlette")


def _import_heavy() -> None:
    for name in HEAVY_MODULES:
        importlib.import_module(name)


def check_installed(packages: tuple[str, ...] = REQUIRED_PACKAGES) -> None:
    """Raise ModuleNotFoundError for the first package that cannot be imported.

    Finds each package without importing it (cheap), so start-up stays fast.
    """
    for name in packages:
        try:
            found = name not in sys.modules or sys.modules[name] is not None
            found = found and importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


class InteropSubsystem(Subsystem):
    """A2A inbound/outbound and MCP inbound, wired to the coordination engine."""

    name = "interop"
    late = True
    late_modules = (
        "coral.api.mcp.held_agents",
        "coral.api.mcp.tools",
        "coral.store.interop_sqlite",
        "coral.store.wait_cursors_sqlite",
    )

    def __init__(self) -> None:
        super().__init__()
        self._pool: Any = None  # the node's asyncpg pool, on PostgreSQL (the node closes it)
        self._pg_tasks: Any = None  # the PostgreSQL task store (holds a runner lock)
        self._watch: Any = None  # PostgresTaskWatch: other replicas' task writes
        self._watch_task: asyncio.Task[None] | None = None
        self._claims: Any = None  # PostgresForwardClaims: one replica forwards each message

    async def _open_stores(
        self, node: Node, ctx: NodeContext
    ) -> tuple[HeldAgentRecords, HeldKeys | None, WaitCursors]:
        """Held-agent records, held keys (None: files) and wait cursors, migrated."""
        if on_postgres(node.config):
            from coral.store.interop_postgres import PostgresHeldAgentRecords, PostgresHeldKeys
            from coral.store.wait_cursors_postgres import PostgresWaitCursors

            pool = self._pool = await node.postgres_pool()
            pg_records, pg_cursors = PostgresHeldAgentRecords(pool), PostgresWaitCursors(pool)
            await pg_records.open()
            await pg_cursors.open()
            return pg_records, PostgresHeldKeys(pool, ctx.identity), pg_cursors
        from coral.store.interop_sqlite import SqliteHeldAgentRecords
        from coral.store.wait_cursors_sqlite import SqliteWaitCursors

        records, cursors = SqliteHeldAgentRecords(node.db), SqliteWaitCursors(node.db)
        await records.open()
        await cursors.open()
        return records, None, cursors

    async def _open_task_records(self, node: Node) -> A2ATaskRecords:
        """The A2A task store, migrated (a2a-sdk is imported by now)."""
        if self._pool is not None:
            from coral.store.a2a_postgres import PostgresA2ATaskRecords
            from coral.store.a2a_watch_postgres import PostgresTaskWatch

            pg_tasks = self._pg_tasks = PostgresA2ATaskRecords(self._pool)
            await pg_tasks.open()
            self._watch = PostgresTaskWatch(listener=node.postgres_listener())
            self._watch_task = asyncio.create_task(self._watch.run(), name="a2a-task-watch")
            return pg_tasks
        from coral.store.a2a_sqlite import SqliteA2ATaskRecords

        tasks = SqliteA2ATaskRecords(node.db)
        await tasks.open()
        return tasks

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Install the lazy HTTP and gRPC entry points (a late subsystem: the rest is set
        up after the servers listen). Checks the front doors' packages are installed."""
        check_installed()
        self._node = node
        self._ctx = ctx
        self.routes = LazyRoutes()
        self.services = LazyGrpcServices(A2A_GRPC_SERVICES, self.routes.ready)
        self._loading: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._built = False
        self.http_installers.append(lambda app, _ctx: self.routes.install(app))
        self.grpc_installers.append(self._install_grpc)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        """Open the held agents and MCP tools (sessions use them at its setup).
        Nothing from a2a-sdk or mcp is imported yet."""
        from coral.api.mcp.held_agents import HeldAgents
        from coral.api.mcp.tools import CoralTools

        directory = need(ctx.directory, "directory")
        engine = need(ctx.coordination, "coordination")
        records, keys, cursors = await self._open_stores(node, ctx)
        self.held = HeldAgents(
            records,
            ctx.config.keys_dir,
            ctx.identity,
            directory,
            need(ctx.gateway, "gateway"),
            keys=keys,
        )
        await self.held.open()
        cap = ctx.config.mcp_max_wait_ms
        self.tools = CoralTools(
            self.held, directory, engine, cursors=cursors, max_wait_ms=cap, default_wait_ms=cap
        )
        ctx.mcp_tools = self.tools
        ctx.held_agents = self.held

    def _install_grpc(self, server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
        server.add_generic_rpc_handlers((self.services,))
        return list(A2A_GRPC_SERVICES)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        """Load and start the front doors in the background (requests wait for them)."""
        self._loading = asyncio.create_task(self._load())

    async def ready(self) -> None:
        """Wait until the A2A and MCP front doors serve (raises what loading raised)."""
        await self.routes.ready()

    async def _load(self) -> None:
        try:
            os.environ.setdefault(A2A_SDK_TRACING_ENV, "false")
            await asyncio.to_thread(_import_heavy)
            inner = await self._build(self._node, self._ctx)
            recorder = RecordingServer()
            for install in self._grpc_parts:
                install(recorder, self._ctx)
            self.services.load(recorder)
            await self.mcp.start()
            await self.proxies.start()
            self._retention_task = asyncio.create_task(
                self._retain(self._node), name="a2a-retention"
            )
            if self._pg_tasks is not None:
                # A lock lost with its connection (database restart) makes this
                # replica's running tasks look abandoned: take it again soon.
                self.every(RUNNER_CHECK_S, self._pg_tasks.hold_runner_lock)
                # Proxies made through another replica are followed here too.
                self.every(PROXY_SYNC_S, self.proxies.sync)
            self._built = True
            self.routes.load(inner)
        except asyncio.CancelledError:
            self.routes.fail(RuntimeError("the node stopped before interop was ready"))
            raise
        except Exception as exc:
            self.routes.fail(exc)
            raise

    async def _build(self, node: Node, ctx: NodeContext) -> web.Application:
        """Build both front doors; returns the app holding their HTTP routes."""
        from coral.api.a2a.executor import CoralAgentExecutor, LazyGateway
        from coral.api.a2a.front_door import A2AFrontDoor
        from coral.api.a2a.outbound import A2AProxies
        from coral.api.a2a.tasks import RetentionPolicy, fail_interrupted
        from coral.api.a2a.write_behind import DEFAULT_DELAY_S, DeferredRunningWrites
        from coral.api.http.app import CTX
        from coral.api.http.host_guard import HostPolicy
        from coral.api.mcp import admin
        from coral.api.mcp.server import McpFrontDoor

        directory = need(ctx.directory, "directory")
        engine = need(ctx.coordination, "coordination")
        held = self.held
        self.gateway = LazyGateway(held, engine)
        a2a_config = ctx.config.a2a
        stored = await self._open_task_records(node)
        self.retention = RetentionPolicy(a2a_config.task_retention_s, a2a_config.max_tasks)
        await self.retention.apply(stored)
        interrupted = await fail_interrupted(stored)
        # Replicas watch each other's task writes: there every state is written at once.
        delay_s = 0.0 if self._pool is not None else DEFAULT_DELAY_S
        self.task_records = DeferredRunningWrites(stored, delay_s=delay_s)
        if interrupted:
            log.info("A2A: %d tasks were running when the node stopped; marked failed", interrupted)
        executor = CoralAgentExecutor(
            held,
            self.gateway,
            directory,
            self.task_records,
            max_content_bytes=ctx.verifier.limits.max_message_bytes // 2,
            reply_timeout_s=a2a_config.reply_timeout_s,
        )
        self.a2a = A2AFrontDoor(ctx, executor, self.task_records, a2a_config, watch=self._watch)
        cap = ctx.config.mcp_max_wait_ms
        self.mcp = McpFrontDoor(
            held,
            self.tools,
            policy=HostPolicy.from_config(ctx.config),
            max_wait_ms=cap,
            sse_retry_ms=ctx.config.mcp_sse_retry_ms,
        )
        claims = None
        if self._pool is not None:
            from coral.store.interop_postgres import PostgresForwardClaims

            claims = self._claims = PostgresForwardClaims(self._pool)
        self.proxies = A2AProxies(held, engine, claims=claims)
        ctx.a2a_proxies = self.proxies
        inner = web.Application()
        inner[CTX] = ctx
        self.a2a.install_http(inner, ctx)
        self.mcp.install(inner)
        admin.installer(held, self.proxies)(inner, ctx)
        self._grpc_parts = [self.a2a.install_grpc]
        return inner

    async def _retain(self, node: Node) -> None:
        from coral.api.a2a.tasks import fail_interrupted
        from coral.protocol.message import now_ms

        while True:
            await asyncio.sleep(RETENTION_EVERY_S)
            if not node.lease.held:
                continue  # replicas: the leading one evicts for all
            try:
                gone = await self.retention.apply(self.task_records)
                interrupted = 0
                if self._pg_tasks is not None:
                    # Tasks a replica that died was following (on SQLite this process
                    # follows every running task; the ones it lost were failed at start).
                    interrupted = await fail_interrupted(self._pg_tasks)
                if self._claims is not None:
                    await self._claims.prune(now_ms() - FORWARD_CLAIM_KEEP_MS)
            except Exception as exc:  # a busy disk must not stop the loop
                log.warning("A2A task retention failed: %s", exc)
                continue
            if gone:
                log.info("A2A task retention evicted %d tasks", gone)
            if interrupted:
                log.info("A2A: %d tasks lost their replica; marked failed", interrupted)

    async def stopping(self, node: Node, ctx: NodeContext) -> None:
        """Stop background readers before the servers stop."""
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)
        for task in (self._retention_task, self._watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._built:
            await self.mcp.stop()
            await self.proxies.stop()
            await self.a2a.close()
            await self.task_records.close()
            await self.gateway.stop()
        await super().stopping(node, ctx)

    async def close(self, node: Node, ctx: NodeContext) -> None:
        """Release the task store's runner lock (its connection goes back to the node's pool)."""
        if self._pg_tasks is not None:
            await self._pg_tasks.close()
            self._pg_tasks = None
        self._pool = None
