"""The launcher: the node runs registry agents as supervised child processes.

Like coral-server's "executable" runtime: an operator asks (admin API) for a
manifest from ``registry/`` with N replicas; ``AgentLauncher`` spawns each
replica with its connection settings in environment variables
(``CORAL_NODE_URL``, ``CORAL_AGENT_KEY_FILE``, ``CORAL_AGENT_NAME``,
``CORAL_AGENT_MANIFEST``, ``CORAL_REPLICA_INDEX``/``COUNT``,
``CORAL_OPTION_*``), restarts crashed ones with exponential backoff, and
stops them all on node shutdown.

The bookkeeping (``LaunchTable``, ``LaunchedAgent``) is sans-I/O: the
supervisor feeds process events in (``started``, ``exited``) and the table
decides what happens next (restart after a backoff delay, or stay down) and
renders the state the admin API shows. Manifests are read with the node's own
``coral-agent.toml`` parser (``coral.sessions.manifest``), never the SDK's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from coral.agents.keyfile import load_or_create_identity
from coral.protocol.agent import AgentManifest
from coral.protocol.errors import NotFound
from coral.protocol.message import now_ms
from coral.sessions.launch_manifest import (
    REGISTRY_DIR,
    InvalidLaunch,
    find_manifest,
    options_env,
    read_manifest,
    runtime_argv,
)

__all__ = [
    "MAX_REPLICAS",
    "REGISTRY_DIR",
    "STOP_GRACE_S",
    "AgentLauncher",
    "BackoffPolicy",
    "InvalidLaunch",
    "LaunchNotFound",
    "LaunchSpec",
    "LaunchTable",
    "LaunchedAgent",
    "ReplicaState",
    "ReplicaStatus",
]

ReplicaStatus = Literal["starting", "running", "backoff", "stopping", "stopped"]

MAX_REPLICAS = 64
#: How long stopped replicas get between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0

log = logging.getLogger("coral.sessions.launcher")


class LaunchNotFound(NotFound):
    """No launched agent has this id."""

    reason = "launch_not_found"


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential restart delay: ``initial_ms * factor**(failures-1)``, capped at ``max_ms``.

    A replica that ran at least ``healthy_after_ms`` before crashing counts as
    healthy again, so its next restart is quick.
    """

    initial_ms: int = 500
    factor: float = 2.0
    max_ms: int = 30_000
    healthy_after_ms: int = 60_000

    def delay_ms(self, consecutive_failures: int) -> int:
        """The wait before restart number ``consecutive_failures`` (1-based)."""
        if consecutive_failures <= 0:
            return 0
        raw = self.initial_ms * self.factor ** (consecutive_failures - 1)
        return int(min(self.max_ms, raw))


@dataclass(frozen=True)
class LaunchSpec:
    """What to run: command line and environment shared by every replica."""

    name: str
    manifest: str
    argv: tuple[str, ...]
    env: dict[str, str]
    replicas: int = 1

    def replica_env(self, index: int) -> dict[str, str]:
        """The environment of replica ``index``: the shared env plus its shard."""
        return {
            **self.env,
            "CORAL_REPLICA_INDEX": str(index),
            "CORAL_REPLICA_COUNT": str(self.replicas),
        }


@dataclass
class ReplicaState:
    """One replica process as the launcher last saw it."""

    index: int
    status: ReplicaStatus = "starting"
    pid: int | None = None
    started_at: int | None = None
    restarts: int = 0
    consecutive_failures: int = 0
    last_exit_code: int | None = None
    next_start_at: int | None = None

    def view(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {
            "index": self.index,
            "status": self.status,
            "pid": self.pid,
            "started_at": self.started_at,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "next_start_at": self.next_start_at,
        }


@dataclass
class LaunchedAgent:
    """A launched registry agent and its replicas."""

    id: str
    spec: LaunchSpec
    created_at: int
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    replicas: list[ReplicaState] = field(default_factory=list)
    stopping: bool = False

    def __post_init__(self) -> None:
        if not self.replicas:
            self.replicas = [ReplicaState(i) for i in range(self.spec.replicas)]

    def started(self, index: int, pid: int, now_ms: int) -> None:
        """Replica ``index`` is running as ``pid``."""
        replica = self.replicas[index]
        replica.status = "running"
        replica.pid = pid
        replica.started_at = now_ms
        replica.next_start_at = None

    def exited(self, index: int, exit_code: int, now_ms: int) -> int | None:
        """Replica ``index`` exited: the delay (ms) before restarting it, or None to stay down."""
        replica = self.replicas[index]
        replica.pid = None
        replica.last_exit_code = exit_code
        if self.stopping:
            replica.status = "stopped"
            return None
        ran_for = now_ms - (replica.started_at or now_ms)
        if ran_for >= self.backoff.healthy_after_ms:
            replica.consecutive_failures = 0
        replica.consecutive_failures += 1
        replica.restarts += 1
        delay = self.backoff.delay_ms(replica.consecutive_failures)
        replica.status = "backoff"
        replica.next_start_at = now_ms + delay
        return delay

    def stop(self) -> None:
        """Stop for good: running replicas will be terminated and not restarted."""
        self.stopping = True
        for replica in self.replicas:
            if replica.status in ("starting", "backoff"):
                replica.status = "stopped"
                replica.next_start_at = None
            elif replica.status == "running":
                replica.status = "stopping"

    @property
    def status(self) -> str:
        """``running`` when every replica runs, ``stopped`` when none will, else ``degraded``."""
        states = {replica.status for replica in self.replicas}
        if states == {"running"}:
            return "running"
        if states <= {"stopped"}:
            return "stopped"
        return "stopping" if self.stopping else "degraded"

    def view(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {
            "id": self.id,
            "name": self.spec.name,
            "manifest": self.spec.manifest,
            "status": self.status,
            "created_at": self.created_at,
            "replicas": [replica.view() for replica in self.replicas],
        }


class LaunchTable:
    """Every agent this node launched, by id."""

    def __init__(self, backoff: BackoffPolicy | None = None) -> None:
        self.backoff = backoff or BackoffPolicy()
        self._agents: dict[str, LaunchedAgent] = {}

    def add(self, spec: LaunchSpec, now_ms: int) -> LaunchedAgent:
        """Record a new launch; InvalidLaunch for a replica count outside 1..MAX_REPLICAS."""
        if not 1 <= spec.replicas <= MAX_REPLICAS:
            raise InvalidLaunch(f"replicas must be in 1..{MAX_REPLICAS}, got {spec.replicas}")
        launched = LaunchedAgent("l" + secrets.token_hex(6), spec, now_ms, self.backoff)
        self._agents[launched.id] = launched
        return launched

    def get(self, launch_id: str) -> LaunchedAgent:
        """The launch with this id; LaunchNotFound otherwise."""
        try:
            return self._agents[launch_id]
        except KeyError:
            raise LaunchNotFound(f"no launched agent {launch_id!r}") from None

    def remove(self, launch_id: str) -> LaunchedAgent:
        """Forget a launch (after it stopped)."""
        launched = self.get(launch_id)
        del self._agents[launch_id]
        return launched

    def all(self) -> list[LaunchedAgent]:
        """Every launch, oldest first."""
        return sorted(self._agents.values(), key=lambda launched: launched.created_at)


# -- process supervision ------------------------------------------------------


class AgentLauncher:
    """Spawns, supervises and stops launched agents' replica processes."""

    def __init__(
        self,
        node_url: str,
        keys_dir: Path,
        logs_dir: Path,
        backoff: BackoffPolicy | None = None,
        registry_dir: Path = REGISTRY_DIR,
    ) -> None:
        self.node_url = node_url
        self.keys_dir = keys_dir
        self.logs_dir = logs_dir
        self.registry_dir = registry_dir
        self.table = LaunchTable(backoff)
        self._supervisors: dict[str, list[asyncio.Task[None]]] = {}
        self._processes: dict[tuple[str, int], asyncio.subprocess.Process] = {}

    def plan(
        self,
        manifest_ref: str,
        replicas: int = 1,
        options: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> LaunchSpec:
        """Validate a manifest and build the command line and environment for its replicas.

        Raises:
            InvalidLaunch: unknown manifest, no executable runtime, a bad name or option.
        """
        path = find_manifest(manifest_ref, self.registry_dir)
        agent, runtime_env = read_manifest(path)
        argv = runtime_argv(agent)
        agent_name = name or agent.name
        try:
            AgentManifest(name=agent_name)
        except ValidationError:
            raise InvalidLaunch(f"name: {agent_name!r} is not a valid agent name") from None
        env = {
            **runtime_env,
            "CORAL_NODE_URL": self.node_url,
            "CORAL_AGENT_KEY_FILE": str(self.keys_dir / f"{agent_name}.key"),
            "CORAL_AGENT_NAME": agent_name,
            **options_env(agent, options or {}),
            "CORAL_AGENT_MANIFEST": str(path.resolve()),
        }
        return LaunchSpec(agent_name, str(path), argv, env, replicas)

    async def launch(self, spec: LaunchSpec) -> LaunchedAgent:
        """Start every replica of ``spec``; they share one key, created here first.

        Raises:
            InvalidLaunch: a replica count outside 1..MAX_REPLICAS.
        """
        launched = self.table.add(spec, now_ms())
        key_file = Path(spec.env["CORAL_AGENT_KEY_FILE"])
        load_or_create_identity(key_file)
        self._supervisors[launched.id] = [
            asyncio.create_task(self._supervise(launched, i), name=f"launch-{launched.id}-{i}")
            for i in range(spec.replicas)
        ]
        return launched

    async def stop(self, launch_id: str) -> LaunchedAgent:
        """Terminate a launch's replicas (SIGTERM, then SIGKILL after a grace period).

        Raises:
            LaunchNotFound: no launch has this id.

        Cancelled while waiting, the launch is marked stopping (no restarts)
        and its replicas may still be exiting.
        """
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
