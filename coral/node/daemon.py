"""The composition root: builds every part from a Config and owns start/stop order.

Start: data dir and keys -> database -> domain services -> gRPC -> HTTP ->
late subsystems (see ``coral.node.subsystems.base``) -> background work ->
health SERVING. Stop runs the reverse: health NOT_SERVING, stop accepting,
drain in-flight requests (bounded by ``shutdown_grace_s``), close services,
close the database.

With a postgresql:// ``database_url`` the node opens one asyncpg pool
(``database_pool_size`` connections) the first time a subsystem asks for it
(``Node.postgres_pool``) and hands it to every PostgreSQL store; it closes it
once, after every subsystem has closed. Likewise one LISTEN connection
(``Node.postgres_listener``) carries every channel's notices; it stops once
every subsystem has stopped its background work.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import importlib
import json
import logging
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web

from coral.agents.keyfile import load_or_create_identity
from coral.api.context import NodeContext, NodeNotReady
from coral.api.grpc.server import ServiceInstaller, build_grpc_server, set_serving
from coral.api.http.app import CTX, RouteInstaller, build_http_app
from coral.api.lazy import LazyRoutes
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.node import preflight
from coral.node.keys import load_or_create_token
from coral.node.leases import Lease, background_lease
from coral.node.subsystems import Subsystem, build_subsystems
from coral.protocol.message import now_ms
from coral.protocol.verify import MessageVerifier
from coral.store.sqlite import SqliteDatabase

if TYPE_CHECKING:  # asyncpg is the optional "postgres" extra
    import asyncpg

    from coral.store.listen_postgres import PostgresListener

log = logging.getLogger("coral.node")


class Node:
    """A running Coral node. ``await start()``, then ``await stop()``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = SqliteDatabase(config.db_path)
        self.ctx: NodeContext | None = None
        self.created_identity = False
        self._grpc: grpc.aio.Server | None = None
        self._grpc_names: list[str] = []
        self._health: Any = None
        self._http: web.AppRunner | None = None
        self.subsystems = build_subsystems(config)
        #: Who runs the once-per-logical-node background work (see ``coral.node.leases``).
        self.lease: Lease = background_lease(config)
        self._lease_task: asyncio.Task[None] | None = None
        #: Subsystems whose setup began: the ones stop (or a failed start) must close.
        self._set_up: list[Subsystem] = []
        #: The routes of each late subsystem, served once it is set up.
        self._late: dict[Subsystem, LazyRoutes] = {}
        self._runtime_written = False
        self._pg_pool: asyncpg.Pool | None = None
        self._pg_opening = asyncio.Lock()
        self._pg_listener: PostgresListener | None = None
        self._pg_listener_task: asyncio.Task[None] | None = None

    async def postgres_pool(self) -> asyncpg.Pool:
        """The node's one PostgreSQL pool, opened on first call; the node closes it at stop.

        Every PostgreSQL store of this process shares it (``database_pool_size``
        connections); stores never close it. Only meaningful with a
        postgresql:// ``database_url``.

        Raises:
            OSError, asyncpg.PostgresError: the server is unreachable or refused us.
        """
        if self._pg_pool is None:
            async with self._pg_opening:
                if self._pg_pool is None:
                    from coral.store.postgres import open_pool

                    self._pg_pool = await open_pool(
                        self.config.database_url, max_size=self.config.database_pool_size
                    )
        return self._pg_pool

    def postgres_listener(self) -> PostgresListener:
        """The node's one LISTEN connection, started on first call; the node stops it at stop.

        Consumers (coordination and teams wake-ups, the A2A task watch, the
        federation watch) subscribe their channel to it instead of holding a
        connection each. Only meaningful with a postgresql:// ``database_url``.
        """
        if self._pg_listener is None:
            from coral.store.listen_postgres import PostgresListener

            self._pg_listener = PostgresListener(self.config.database_url)
            self._pg_listener_task = asyncio.create_task(
                self._pg_listener.run(), name="node-postgres-listener"
            )
        return self._pg_listener

    async def _stop_postgres_listener(self) -> None:
        """Stop the shared LISTEN connection, if started (after the subsystems stopped)."""
        task, self._pg_listener_task = self._pg_listener_task, None
        self._pg_listener = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _close_postgres_pool(self) -> None:
        """Close the shared pool, if opened (after every subsystem closed)."""
        pool, self._pg_pool = self._pg_pool, None
        if pool is not None:
            await pool.close()

    async def start(self) -> NodeContext:
        """Start everything; returns the context with the bound addresses filled in.

        Checks the data dir, TLS files, database driver and ports before opening anything.
        If any later step fails, everything already opened (subsystems, servers,
        database) is closed again before the error propagates, so nothing stays
        half-open.

        Raises:
            StartError: a cause the operator can fix (port in use, data dir, TLS, driver).
        """
        try:
            return await self._start()
        except BaseException:
            await self._rollback()
            raise

    async def _start(self) -> NodeContext:
        cfg = self.config
        preflight.check_data_dir(cfg.data_dir)
        ssl_context = preflight.tls_context(cfg)
        preflight.check_database_driver(cfg)
        preflight.check_ports(cfg)
        identity, self.created_identity = load_or_create_identity(cfg.keys_dir / "node.key")
        admin_token = load_or_create_token(cfg.keys_dir / "admin.token")
        await self.db.open()
        self._lease_task = asyncio.create_task(self.lease.run(), name="node-lease")
        ctx = NodeContext(
            config=cfg,
            identity=identity,
            metrics=NodeMetrics(),
            verifier=MessageVerifier(cfg.limits.to_limits()),
            admin_token=admin_token,
            started_at=now_ms(),
        )
        self.ctx = ctx
        grpc_installers: list[ServiceInstaller] = []
        http_installers: list[RouteInstaller] = []
        for subsystem in self.subsystems:
            if subsystem.late:
                subsystem.prepare(self, ctx)
                # Installers added in prepare go on the node's app; setup's on the late one.
                http_installers.extend(subsystem.http_installers)
                subsystem.http_installers.clear()
                routes = self._late[subsystem] = LazyRoutes()
                http_installers.append(_late_paths(routes, subsystem.late_paths))
            else:
                self._set_up.append(subsystem)
                await subsystem.setup(self, ctx)
                http_installers.extend(subsystem.http_installers)
            grpc_installers.extend(subsystem.grpc_installers)
        if self._late:
            ctx.wiring = asyncio.get_running_loop().create_future()
            if ctx.gateway is not None:
                ctx.gateway.wiring = ctx.wiring

        self._grpc, self._health, self._grpc_names = build_grpc_server(ctx, grpc_installers)
        bind = f"{cfg.host}:{cfg.grpc_port}"
        try:
            if ssl_context is not None:
                assert cfg.tls_cert_file is not None and cfg.tls_key_file is not None
                creds = grpc.ssl_server_credentials(
                    [(cfg.tls_key_file.read_bytes(), cfg.tls_cert_file.read_bytes())]
                )
                grpc_port = self._grpc.add_secure_port(bind, creds)
            else:
                grpc_port = self._grpc.add_insecure_port(bind)
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise preflight.bind_error(
                "gRPC", cfg.host, cfg.grpc_port, "--grpc-port", exc
            ) from None
        if grpc_port == 0:
            raise preflight.bind_error("gRPC", cfg.host, cfg.grpc_port, "--grpc-port", None)
        await self._grpc.start()
        advertise = cfg.advertise_host or cfg.host
        ctx.grpc_address = f"{advertise}:{grpc_port}"

        app = build_http_app(ctx, http_installers)
        # handler_cancellation: a client that disconnects cancels its handler,
        # so a long-poll frees its wait slot at once (gRPC cancels the same way).
        self._http = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=cfg.shutdown_grace_s,
            handler_cancellation=True,
        )
        await self._http.setup()
        site = web.TCPSite(
            self._http, cfg.host, cfg.http_port, ssl_context=ssl_context, reuse_port=False
        )
        try:
            await site.start()
        except OSError as exc:
            raise preflight.bind_error(
                "HTTP", cfg.host, cfg.http_port, "--http-port", exc
            ) from None
        http_port = self._http.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        ctx.http_address = f"{scheme}://{advertise}:{http_port}"

        await self._set_up_late(ctx)
        for subsystem in self.subsystems:
            await subsystem.started(self, ctx)
        set_serving(self._health, self._grpc_names, True)
        self._write_runtime_file(ctx)
        return ctx

    async def _set_up_late(self, ctx: NodeContext) -> None:
        """Set up the late subsystems (servers already listening), then serve their routes.

        Their modules are imported in a worker thread, so the event loop keeps
        answering meanwhile; requests to their paths and gateway submits wait
        until all are set up (a failure refuses them, and fails the start).
        """
        late = list(self._late)
        try:
            modules = [name for subsystem in late for name in subsystem.late_modules]
            await asyncio.to_thread(_import_all, modules)
            for subsystem in late:
                self._set_up.append(subsystem)
                self._set_up.sort(key=self.subsystems.index)  # stop order as without late
                await subsystem.setup(self, ctx)
                inner = web.Application()
                inner[CTX] = ctx
                for install in subsystem.http_installers:
                    install(inner, ctx)
                self._late[subsystem].load(inner)
        except BaseException as exc:
            refusal = NodeNotReady(f"the node failed to start: {exc!r}")
            for routes in self._late.values():
                routes.fail(refusal)
            self._wired(ctx, refusal)
            raise
        self._wired(ctx, None)

    def _wired(self, ctx: NodeContext, error: BaseException | None) -> None:
        """Release the submits and views waiting for the late subsystems."""
        wiring, ctx.wiring = ctx.wiring, None
        if ctx.gateway is not None:
            ctx.gateway.wiring = None
        if wiring is None or wiring.done():
            return
        if error is None:
            wiring.set_result(None)
        else:
            wiring.set_exception(error)
            wiring.exception()  # retrieved here; each waiter sees it too

    async def _rollback(self) -> None:
        """Close what a failed start opened, in reverse order, without draining.

        Every step runs even if an earlier one fails (failures are logged at debug
        level: the start's own error is the one to report). The runtime file is left
        alone: it may belong to another node running from the same data dir.
        """
        ctx = self.ctx
        if ctx is not None:
            for subsystem in reversed(self._set_up):
                await _quietly(subsystem.stopping(self, ctx))
        await self._stop_postgres_listener()
        await self._stop_lease()
        if self._grpc is not None:
            await _quietly(self._grpc.stop(0))
            self._grpc = None
        if self._http is not None:
            await _quietly(self._http.cleanup())
            self._http = None
        if ctx is not None:
            for subsystem in reversed(self._set_up):
                await _quietly(subsystem.close(self, ctx))
        self._set_up.clear()
        await _quietly(self._close_postgres_pool())
        await _quietly(self.db.close())

    async def _stop_lease(self) -> None:
        """Give up the lease (leased jobs stopped with their subsystems)."""
        task, self._lease_task = self._lease_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _write_runtime_file(self, ctx: NodeContext) -> None:
        info = {
            "pid": os.getpid(),
            "node_id": ctx.identity.did,
            "grpc_address": ctx.grpc_address,
            "http_address": ctx.http_address,
        }
        path: Path = self.config.runtime_file
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(path)
        self._runtime_written = True

    async def stop(self) -> None:
        """Stop in reverse order, draining in-flight calls within the grace period."""
        grace = self.config.shutdown_grace_s
        if self._health is not None:
            set_serving(self._health, self._grpc_names, False)
        ctx = self.ctx
        if ctx is not None:
            for subsystem in reversed(self._set_up):
                await subsystem.stopping(self, ctx)
        await self._stop_postgres_listener()
        await self._stop_lease()
        if self._grpc is not None:
            await self._grpc.stop(grace)
            self._grpc = None
        if self._http is not None:
            await self._http.cleanup()
            self._http = None
        if ctx is not None:
            for subsystem in reversed(self._set_up):
                await subsystem.close(self, ctx)
        self._set_up.clear()
        await self._close_postgres_pool()
        await self.db.close()
        if self._runtime_written:  # never another node's file (same data dir, failed start)
            self._runtime_written = False
            self.config.runtime_file.unlink(missing_ok=True)
        # At interpreter exit, freeze the heap before the final full garbage
        # collection (seconds over a large heap on a busy host, after A2A or
        # MCP traffic): the process is going away, so a SIGTERM exits promptly.
        # atexit runs before that collection; unregister first keeps it once.
        atexit.unregister(gc.freeze)
        atexit.register(gc.freeze)

    async def run_until_signalled(self, stop_event: asyncio.Event) -> None:
        """Start, wait for ``stop_event``, stop."""
        await self.start()
        try:
            await stop_event.wait()
        finally:
            await self.stop()


def _late_paths(routes: LazyRoutes, paths: tuple[str, ...]) -> RouteInstaller:
    """The installer routing ``paths`` to a late subsystem's routes."""
    return lambda app, _ctx: routes.install_paths(app, paths)


def _import_all(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)


async def _quietly(step: Awaitable[object]) -> None:
    """Await one rollback step; an ordinary failure is logged, cancellation propagates."""
    try:
        await step
    except Exception:
        log.debug("rollback step failed after a failed start", exc_info=True)
