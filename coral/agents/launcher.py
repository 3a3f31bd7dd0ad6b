"""The launcher's bookkeeping: which registry agents run, their replicas, restarts.

Sans-I/O: no processes, no clock. ``coral.node.subsystems.launcher`` spawns and
watches the processes and feeds events in (``started``, ``exited``); this
module decides what happens next (restart after a backoff delay, or stay
down) and renders the state the admin API shows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from coral.protocol.errors import InvalidMessage, NotFound

ReplicaStatus = Literal["starting", "running", "backoff", "stopping", "stopped"]

MAX_REPLICAS = 64


class LaunchNotFound(NotFound):
    """No launched agent has this id."""

    reason = "launch_not_found"


class InvalidLaunch(InvalidMessage):
    """A launch request that cannot be honoured (bad replica count, unknown manifest...)."""

    reason = "invalid_launch"


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
