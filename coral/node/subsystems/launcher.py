"""The launcher subsystem: the node starts registry agents as child processes.

Like coral-server's "executable" runtime: an operator asks (admin API) for a
manifest from ``registry/`` with N replicas; the node spawns each replica with
its connection settings in environment variables (``CORAL_NODE_URL``,
``CORAL_AGENT_KEY_FILE``, ``CORAL_AGENT_NAME``, ``CORAL_AGENT_MANIFEST``,
``CORAL_REPLICA_INDEX``/``COUNT``, ``CORAL_OPTION_*``), restarts crashed ones
with exponential backoff, and stops them all on node shutdown.

Admin routes (``Authorization: Bearer <admin token>``):
``POST /v1/admin/launch`` ``{manifest, replicas?, options?, name?}``,
``GET /v1/admin/launched``, ``DELETE /v1/admin/launched/{id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from coral.agents.keyfile import load_or_create_identity
from coral.agents.launcher import (
    BackoffPolicy,
    InvalidLaunch,
    LaunchedAgent,
    LaunchSpec,
    LaunchTable,
)
from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, read_json_body
from coral.node.subsystems import Subsystem
from coral.protocol.agent import AgentManifest
from coral.protocol.message import now_ms

log = logging.getLogger("coral.agents.launcher")

STOP_GRACE_S = 10.0


class AgentLauncher:
    """Spawns, supervises and stops launched agents' replica processes."""

    def __init__(
        self,
        node_url: str,
        keys_dir: Path,
        logs_dir: Path,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.node_url = node_url
        self.keys_dir = keys_dir
        self.logs_dir = logs_dir
        self.table = LaunchTable(backoff)
        self._supervisors: dict[str, list[asyncio.Task[None]]] = {}
        self._processes: dict[tuple[str, int], asyncio.subprocess.Process] = {}

    def plan(
        self,
        manifest_ref: str,
        replicas: int = 1,
        options: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> LaunchSpec:
        """Validate a manifest and build the command line and environment for its replicas."""
        from coral_sdk.registry import ManifestError, find_manifest, load_manifest
        from coral_sdk.serve import resolve_settings, settings_env

        try:
            path = find_manifest(manifest_ref)
            manifest = load_manifest(path)
            runtime = manifest.runtimes.executable
            if runtime is None:
                raise ManifestError("runtimes.executable: missing; nothing to launch")
            agent_name = name or manifest.agent.name
            key_file = self.keys_dir / f"{agent_name}.key"
            env = {"CORAL_AGENT_KEY_FILE": str(key_file), "CORAL_AGENT_NAME": agent_name}
            settings = resolve_settings(
                manifest, node_url=self.node_url, env=env, option_overrides=options
            )
            AgentManifest(name=agent_name)
        except ValidationError:
            raise InvalidLaunch(f"name: {name!r} is not a valid agent name") from None
        except (ManifestError, ValueError) as exc:
            raise InvalidLaunch(str(exc).splitlines()[0]) from None
        child_env = {
            **runtime.env,
            **settings_env(settings),
            "CORAL_AGENT_MANIFEST": str(path.resolve()),
        }
        return LaunchSpec(agent_name, str(path), tuple(runtime.argv()), child_env, replicas)

    async def launch(self, spec: LaunchSpec) -> LaunchedAgent:
        """Start every replica of ``spec``; they share one key, created here first."""
        launched = self.table.add(spec, now_ms())
        key_file = Path(spec.env["CORAL_AGENT_KEY_FILE"])
        load_or_create_identity(key_file)
        self._supervisors[launched.id] = [
            asyncio.create_task(self._supervise(launched, i), name=f"launch-{launched.id}-{i}")
            for i in range(spec.replicas)
        ]
        return launched

    async def stop(self, launch_id: str) -> LaunchedAgent:
        """Terminate a launch's replicas (SIGTERM, then SIGKILL after a grace period)."""
        launched = self.table.get(launch_id)
        launched.stop()
        tasks = self._supervisors.pop(launch_id, [])
        for index, task in enumerate(tasks):
            process = self._processes.get((launch_id, index))
            if process is None or process.returncode is not None:
                task.cancel()  # waiting out a restart backoff: nothing to terminate
            else:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S) if tasks else (set(), set())
        for index in range(len(launched.replicas)):
            process = self._processes.pop((launch_id, index), None)
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if pending:
            await asyncio.wait(pending, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        for replica in launched.replicas:
            replica.status = "stopped"
        self.table.remove(launch_id)
        return launched

    async def stop_all(self) -> None:
        """Stop every launch (node shutdown)."""
        await asyncio.gather(
            *(self.stop(launched.id) for launched in self.table.all()), return_exceptions=True
        )

    async def _supervise(self, launched: LaunchedAgent, index: int) -> None:
        spec = launched.spec
        log_path = self.logs_dir / f"{spec.name}-{launched.id}-{index}.log"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        while not launched.stopping:
            # The child writes its own log; the parent only hands over the descriptor.
            with open(log_path, "ab") as log_file:  # noqa: ASYNC230
                process = await asyncio.create_subprocess_exec(
                    *spec.argv,
                    env={
                        **os.environ,
                        "PYTHONUNBUFFERED": "1",
                        "CORAL_PARENT_PID": str(os.getpid()),
                        **spec.replica_env(index),
                    },
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                    stdin=asyncio.subprocess.DEVNULL,
                    start_new_session=True,
                )
            self._processes[(launched.id, index)] = process
            launched.started(index, process.pid, now_ms())
            log.info("launched %s replica %d as pid %d", spec.name, index, process.pid)
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                if process.returncode is None:
                    process.kill()
                raise
            delay_ms = launched.exited(index, code, now_ms())
            if delay_ms is None:
                break
            log.warning(
                "%s replica %d exited with %d; restarting in %d ms (log: %s)",
                spec.name,
                index,
                code,
                delay_ms,
                log_path,
            )
            await asyncio.sleep(delay_ms / 1000)


class LauncherSubsystem(Subsystem):
    """Owns the AgentLauncher, its admin routes, and stopping children on shutdown."""

    name = "launcher"

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        """Build the launcher (its node URL is filled in once the HTTP server listens)."""
        data_dir = ctx.config.data_dir
        self.launcher = AgentLauncher("", ctx.config.keys_dir / "agents", data_dir / "launched")
        ctx.launcher = self.launcher
        self.http_installers.append(install)

    async def started(self, node: Any, ctx: NodeContext) -> None:
        """Children connect to the address the HTTP server actually bound."""
        self.launcher.node_url = ctx.http_address

    async def stopping(self, node: Any, ctx: NodeContext) -> None:
        """Stop every launched agent before the servers go away."""
        await self.launcher.stop_all()
        await super().stopping(node, ctx)


def _launcher(request: web.Request) -> tuple[NodeContext, AgentLauncher]:
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    launcher: AgentLauncher = need(ctx.launcher, "launcher")
    return ctx, launcher


async def launch(request: web.Request) -> web.Response:
    """POST /v1/admin/launch {manifest, replicas?, options?, name?}."""
    _, launcher = _launcher(request)
    body = await read_json_body(request, allow_empty=True)
    if not isinstance(body.get("manifest"), str):
        raise InvalidLaunch("give 'manifest': a registry name or manifest path")
    replicas = body.get("replicas", 1)
    options = body.get("options") or {}
    name = body.get("name")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise InvalidLaunch("'replicas' must be an integer")
    if not isinstance(options, dict) or not (name is None or isinstance(name, str)):
        raise InvalidLaunch("'options' must be an object and 'name' a string")
    spec = launcher.plan(body["manifest"], replicas, options, name)
    launched = await launcher.launch(spec)
    return web.json_response(launched.view(), status=201)


async def list_launched(request: web.Request) -> web.Response:
    """GET /v1/admin/launched."""
    _, launcher = _launcher(request)
    return web.json_response({"launched": [item.view() for item in launcher.table.all()]})


async def stop_launched(request: web.Request) -> web.Response:
    """DELETE /v1/admin/launched/{id}: stop its replicas and forget it."""
    _, launcher = _launcher(request)
    launched = await launcher.stop(request.match_info["launch_id"])
    return web.json_response(launched.view())


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the launcher's admin routes."""
    app.router.add_post("/v1/admin/launch", launch)
    app.router.add_get("/v1/admin/launched", list_launched)
    app.router.add_delete("/v1/admin/launched/{launch_id}", stop_launched)
