"""Agent runtimes as coral-server runs them: an executable, or a Docker container.

``executable_plan`` and ``docker_spec`` are pure: they build the command line,
working directory and environment (or the Docker API's container body) from a
graph agent and the Coral variables. ``ExecutableProcess`` starts a plan in its
own process group, captures its output lines, notices its exit and stops it
with SIGTERM then, after a grace period, SIGKILL. ``DockerContainer`` does the
same through a Docker daemon, when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coral.protocol.errors import InvalidMessage
from coral.protocol.tasks import run_to_completion
from coral.sessions.graph import GraphAgent
from coral.sessions.options import env_value, file_values

log = logging.getLogger("coral.sessions.agent")

#: How many output lines of each agent are kept for the session API.
LOG_LINES = 500
#: Inside a container the node is reached through the host gateway.
DOCKER_HOST_ALIAS = "host.docker.internal"


class RuntimeUnavailable(InvalidMessage):
    """The agent's runtime cannot run here (no executable, no Docker daemon)."""

    reason = "runtime_unavailable"


@dataclass(frozen=True)
class LaunchPlan:
    """What to start: argv, working directory and the full environment."""

    argv: tuple[str, ...]
    cwd: Path | None
    env: Mapping[str, str]
    #: Files written for ``transport = "fs"`` options (removed when the agent stops).
    files: tuple[Path, ...] = ()


def find_executable(agent: GraphAgent) -> Path:
    """The program of an executable runtime: absolute, beside the toml, or on PATH."""
    runtime = agent.agent.executable
    assert runtime is not None
    raw = Path(runtime.path).expanduser()
    candidates = [raw] if raw.is_absolute() else []
    if not raw.is_absolute() and agent.agent.path is not None:
        candidates.append(agent.agent.path / raw)
    if not raw.is_absolute():
        found = shutil.which(runtime.path)
        if found:
            candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    raise RuntimeUnavailable(
        f"agent {agent.name!r}: no executable found for path {runtime.path!r}"
        " (absolute, relative to its coral-agent.toml, or on PATH)"
    )


def option_environment(
    agent: GraphAgent, files_dir: Path | None
) -> tuple[dict[str, str], list[Path]]:
    """Each option as one variable, as coral-server encodes it; fs options as files."""
    env: dict[str, str] = {}
    written: list[Path] = []
    for name, value in agent.options.items():
        spec = agent.agent.options[name]
        if spec.transport == "fs":
            if files_dir is None:
                raise RuntimeUnavailable(f"option {name!r} needs a folder for its files")
            paths = []
            for index, content in enumerate(file_values(spec, value)):
                path = files_dir / f"{name}.{index}"
                path.write_bytes(content)
                paths.append(path)
            written.extend(paths)
            env[name] = os.pathsep.join(str(p) for p in paths)
        else:
            env[name] = env_value(spec, value)
    return env, written


def executable_plan(
    agent: GraphAgent,
    coral_env: Mapping[str, str],
    base_env: Mapping[str, str],
    files_dir: Path | None = None,
) -> LaunchPlan:
    """Program, arguments, cwd (the toml's folder) and inherited env + options + Coral vars."""
    runtime = agent.agent.executable
    if runtime is None:
        raise RuntimeUnavailable(f"agent {agent.name!r} has no executable runtime")
    program = find_executable(agent)
    options, files = option_environment(agent, files_dir)
    env = {**base_env, **options, **coral_env}
    return LaunchPlan((str(program), *runtime.arguments), agent.agent.path, env, tuple(files))


def docker_spec(
    agent: GraphAgent, coral_env: Mapping[str, str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """The Docker Engine API ``POST /containers/create`` body for a docker runtime.

    Options go in as environment variables (fs options are not mounted here:
    a clear error instead). The container reaches the node through
    ``host.docker.internal`` mapped to the host gateway.
    """
    runtime = agent.agent.docker
    if runtime is None:
        raise RuntimeUnavailable(f"agent {agent.name!r} has no docker runtime")
    if any(agent.agent.options[n].transport == "fs" for n in agent.options):
        raise RuntimeUnavailable(f"agent {agent.name!r}: fs options are not supported in docker")
    options, _ = option_environment(agent, None)
    env = {**options, **coral_env}
    body: dict[str, Any] = {
        "Image": runtime.image,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": dict(labels),
        "HostConfig": {"ExtraHosts": [f"{DOCKER_HOST_ALIAS}:host-gateway"], "AutoRemove": True},
    }
    if runtime.command:
        body["Cmd"] = list(runtime.command)
    return body


def container_url(url: str) -> str:
    """A node URL as a container sees it (loopback hosts become the host alias)."""
    for loopback in ("127.0.0.1", "localhost", "0.0.0.0"):
        url = url.replace(f"//{loopback}:", f"//{DOCKER_HOST_ALIAS}:")
    return url


@dataclass
class AgentOutput:
    """The last lines an agent printed, for the session API."""

    lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))

    def add(self, stream: str, line: str) -> None:
        """Record one line from ``stdout`` or ``stderr``."""
        self.lines.append(f"[{stream}] {line}")


ExitCallback = Callable[[int | None], None]


class ExecutableProcess:
    """One running executable agent, supervised."""

    def __init__(self, name: str, plan: LaunchPlan, output: AgentOutput) -> None:
        self.name = name
        self.plan = plan
        self.output = output
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self.proc.pid if self.proc is not None else None

    async def start(self, on_exit: ExitCallback) -> None:
        """Spawn the process (own process group) and watch it until it exits.

        ``on_exit`` is called with the exit code once the process has exited
        and its output is drained.

        Raises:
            OSError: the program could not be spawned (missing, not
                executable, bad working directory).

        Cancellation: cancelled while spawning, asyncio kills the child
        before the cancellation propagates and nothing is watched; once
        started, the watching task runs on its own and ``stop`` ends it.
        """
        self.proc = await asyncio.create_subprocess_exec(
            *self.plan.argv,
            cwd=self.plan.cwd,
            env=dict(self.plan.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        log.info("agent %s: started pid %s: %s", self.name, self.proc.pid, " ".join(self.plan.argv))
        self._watch = asyncio.create_task(self._supervise(on_exit), name=f"agent-{self.name}")

    async def _pump(self, stream: asyncio.StreamReader | None, label: str) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit: take what is there
                line = await stream.read(64 * 1024)
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self.output.add(label, text)
            log.info("agent %s [%s] %s", self.name, label, text)

    async def _supervise(self, on_exit: ExitCallback) -> None:
        assert self.proc is not None
        await asyncio.gather(
            self._pump(self.proc.stdout, "stdout"), self._pump(self.proc.stderr, "stderr")
        )
        self.returncode = await self.proc.wait()
        log.info("agent %s: exited with code %s", self.name, self.returncode)
        self.output.add("coral", f"exited with code {self.returncode}")
        for path in self.plan.files:
            with contextlib.suppress(OSError):
                path.unlink()
        on_exit(self.returncode)

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL after ``grace_s``; returns once it exited.

        Cancellation: a cancelled stop gives no more grace: the process group
        gets SIGKILL at once (if it still runs), then ``CancelledError`` is
        raised. The watching task (shielded) keeps running, so ``on_exit``
        still fires when the process has exited.
        """
        proc = self.proc
        if proc is None or self._watch is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._watch), grace_s)
            except TimeoutError:
                log.warning("agent %s: no exit %.1fs after SIGTERM; SIGKILL", self.name, grace_s)
                self._kill(proc)
            except asyncio.CancelledError:
                log.warning("agent %s: stop cancelled during the grace period; SIGKILL", self.name)
                self._kill(proc)
                raise
        await asyncio.shield(self._watch)

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


class DockerContainer:
    """One docker-runtime agent, run through the Docker daemon (``docker`` package)."""

    def __init__(self, name: str, spec: dict[str, Any], output: AgentOutput) -> None:
        self.name = name
        self.spec = spec
        self.output = output
        self.container: Any = None
        self._watch: asyncio.Task[None] | None = None

    @staticmethod
    def client() -> Any:
        """A Docker client for a reachable daemon; RuntimeUnavailable otherwise."""
        try:
            import docker
        except ImportError:
            raise RuntimeUnavailable(
                "docker runtime skipped: the 'docker' Python package is not installed"
            ) from None
        try:
            client = docker.from_env()
            client.ping()
        except Exception as exc:  # the SDK raises many kinds; all mean "no daemon"
            raise RuntimeUnavailable(f"docker runtime skipped: no Docker daemon ({exc})") from None
        return client

    async def start(self, on_exit: ExitCallback) -> None:
        """Create and start the container, then follow its logs until it exits.

        Raises:
            RuntimeUnavailable: no Docker daemon (or no ``docker`` package).
            Exception: the Docker SDK's errors (image not found, API error),
                unwrapped.

        Cancellation: the start (client, container run, log follower) runs
        as one step that finishes before ``CancelledError`` is raised, so a
        container started after the cancel is followed and ``stop`` stops it.
        """
        await run_to_completion(self._start(on_exit))

    async def _start(self, on_exit: ExitCallback) -> None:
        client = await asyncio.to_thread(self.client)
        spec = self.spec
        self.container = await asyncio.to_thread(
            client.containers.run,
            spec["Image"],
            spec.get("Cmd"),
            environment=spec["Env"],
            labels=spec["Labels"],
            extra_hosts={DOCKER_HOST_ALIAS: "host-gateway"},
            detach=True,
        )

        async def follow() -> None:
            def lines() -> None:
                for chunk in self.container.logs(stream=True, follow=True):
                    self.output.add("stdout", chunk.decode(errors="replace").rstrip())

            await asyncio.to_thread(lines)
            result = await asyncio.to_thread(self.container.wait)
            on_exit(int(result.get("StatusCode", -1)))

        self._watch = asyncio.create_task(follow(), name=f"container-{self.name}")

    async def stop(self, grace_s: float = 5.0) -> None:
        """``docker stop`` (SIGTERM, then SIGKILL after the grace period).

        Docker errors are suppressed: a container that is gone counts as stopped.

        Cancellation: the ``docker stop`` already running in its worker thread
        completes; this call just stops waiting for it.
        """
        if self.container is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.container.stop, timeout=int(grace_s))
        if self._watch is not None:
            with contextlib.suppress(Exception):
                await self._watch


def new_files_dir() -> Path:
    """A private folder for one agent's fs options."""
    return Path(tempfile.mkdtemp(prefix="coral-agent-"))
