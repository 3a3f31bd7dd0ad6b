"""``coral-agent serve``: run a registry manifest's agent against a node.

Connection settings come from (first wins) the command-line flag, the
environment, the manifest's ``[serve]`` table, then defaults:

- node URL: ``--node``, ``CORAL_NODE_URL``, ``serve.node_url``, ``http://127.0.0.1:7421``
- key file: ``CORAL_AGENT_KEY_FILE``, ``serve.key_file``, ``<user data dir>/coral-agent/<name>.key``
- replicas: ``CORAL_REPLICA_INDEX``/``CORAL_REPLICA_COUNT`` make this process one
  replica; otherwise ``serve.replicas`` replicas run in this process.
- ``CORAL_AGENT_NAME`` renames the agent; ``CORAL_METRICS_PORT`` serves
  ``/metrics`` and ``/healthz``; ``CORAL_OPTION_<NAME>`` sets an option.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from coral.agents.keyfile import load_or_create_identity
from coral.protocol.agent import AgentManifest
from coral.protocol.identity import Identity
from coral_sdk.model_agent import ModelAgent, ReplicaShard
from coral_sdk.paths import default_key_file
from coral_sdk.registry import ManifestError, OptionValue, RegistryManifest, load_manifest

log = logging.getLogger("coral_sdk.serve")

DEFAULT_NODE_URL = "http://127.0.0.1:7421"

AgentFactory = Callable[["ServeSettings"], ModelAgent[Any, Any]]


@dataclass(frozen=True)
class ServeSettings:
    """Everything needed to build one agent process (or replica) from a manifest."""

    manifest: RegistryManifest
    node_url: str
    key_file: Path
    options: dict[str, OptionValue] = field(default_factory=dict)
    replica: ReplicaShard = field(default_factory=ReplicaShard)
    metrics_port: int | None = None
    agent_name: str | None = None
    #: An in-memory identity instead of the key file (Ray model replicas never register).
    identity: Identity | None = None

    @property
    def agent_manifest(self) -> AgentManifest:
        """The registered manifest (renamed when ``agent_name`` is set)."""
        manifest = self.manifest.agent_manifest()
        if self.agent_name:
            # Validate, unlike model_copy: a launcher-given name must be a legal agent name.
            renamed = {**manifest.model_dump(), "name": self.agent_name}
            manifest = AgentManifest.model_validate(renamed)
        return manifest

    def agent_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a ``ModelAgent`` subclass constructor."""
        return {
            "node_url": self.node_url,
            "key_file": self.key_file if self.identity is None else None,
            "identity": self.identity,
            "manifest": self.agent_manifest,
            "options": self.options,
            "replica": self.replica,
            "metrics_port": self.metrics_port,
        }


def resolve_settings(
    manifest: RegistryManifest,
    *,
    node_url: str | None = None,
    env: Mapping[str, str] | None = None,
    option_overrides: Mapping[str, Any] | None = None,
) -> ServeSettings:
    """Combine flag, environment, manifest and defaults into settings for one process."""
    env = os.environ if env is None else env
    name = env.get("CORAL_AGENT_NAME") or manifest.agent.name
    key_file = env.get("CORAL_AGENT_KEY_FILE") or manifest.serve.key_file
    metrics = env.get("CORAL_METRICS_PORT")
    metrics_port = int(metrics) if metrics else manifest.serve.metrics_port
    index, count = env.get("CORAL_REPLICA_INDEX"), env.get("CORAL_REPLICA_COUNT")
    try:
        replica = ReplicaShard(int(index), int(count or 1)) if index is not None else ReplicaShard()
    except ValueError as exc:
        raise ManifestError(f"CORAL_REPLICA_INDEX/COUNT: {exc}") from None
    return ServeSettings(
        manifest=manifest,
        node_url=node_url
        or env.get("CORAL_NODE_URL")
        or manifest.serve.node_url
        or DEFAULT_NODE_URL,
        key_file=Path(key_file).expanduser() if key_file else default_key_file(name),
        options=manifest.resolve_options(option_overrides, env),
        replica=replica,
        metrics_port=metrics_port,
        agent_name=env.get("CORAL_AGENT_NAME"),
    )


def agent_factory(manifest: RegistryManifest) -> AgentFactory | None:
    """``create_agent`` of the manifest's runtime module (None for a command runtime)."""
    runtime = manifest.runtimes.executable
    if runtime is None:
        raise ManifestError("runtimes.executable: the manifest has no runtime to serve")
    if runtime.module is None:
        return None
    module = importlib.import_module(runtime.module)
    factory = getattr(module, "create_agent", None)
    if factory is None:
        raise ManifestError(f"runtimes.executable.module: {runtime.module} has no create_agent")
    created: AgentFactory = factory
    return created


async def serve_agents(agents: list[ModelAgent[Any, Any]]) -> None:
    """Run agents until SIGINT/SIGTERM, then stop them after in-flight work finishes."""
    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for agent in agents:
            agent.stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop_all)
    parent = os.environ.get("CORAL_PARENT_PID")
    watchdog = asyncio.create_task(_exit_with_parent(int(parent), stop_all)) if parent else None
    try:
        await asyncio.gather(*(agent.run() for agent in agents))
    finally:
        if watchdog is not None:
            watchdog.cancel()


async def _exit_with_parent(parent_pid: int, stop: Callable[[], None]) -> None:
    # A launched agent whose node died (even by SIGKILL) stops instead of retrying forever.
    # Nothing signals a parent's death to an unrelated process, so poll (cheaply).
    while os.getppid() == parent_pid:  # noqa: ASYNC110
        await asyncio.sleep(1.0)
    log.warning("launching node (pid %d) is gone; stopping", parent_pid)
    stop()


def build_replicas(settings: ServeSettings, factory: AgentFactory) -> list[ModelAgent[Any, Any]]:
    """One agent, or ``serve.replicas`` in-process replicas sharing the key when none is set."""
    # Create the key before any replica starts, so all replicas share one identity.
    settings.key_file.parent.mkdir(parents=True, exist_ok=True)
    load_or_create_identity(settings.key_file)
    count = settings.manifest.serve.replicas
    if settings.replica.count > 1 or count == 1:
        agents = [factory(settings)]
    else:
        agents = [factory(replace(settings, replica=ReplicaShard(i, count))) for i in range(count)]
    concurrency = settings.manifest.serve.concurrency
    for agent in agents:
        if concurrency is not None:
            agent.concurrency = concurrency
    return agents


def serve_settings(settings: ServeSettings, factory: AgentFactory | None = None) -> int:
    """Serve with resolved settings; returns a process exit status."""
    runtime = settings.manifest.runtimes.executable
    for key, value in (runtime.env if runtime else {}).items():
        # Before the runtime module imports torch, so thread settings take effect.
        os.environ.setdefault(key, value)
    chosen = factory or agent_factory(settings.manifest)
    if chosen is None:
        return _run_command(settings)
    agents = build_replicas(settings, chosen)
    log.info(
        "serving %s (%d replica(s) here) on %s as %s",
        settings.agent_manifest.name,
        len(agents),
        settings.node_url,
        agents[0].did,
    )
    asyncio.run(serve_agents(agents))
    return 0


def serve_manifest(path: str | os.PathLike[str], node_url: str | None = None) -> int:
    """Load a manifest (path or registry name) and serve its agent until interrupted."""
    logging.basicConfig(level=os.environ.get("CORAL_LOG_LEVEL", "INFO").upper())
    try:
        manifest = load_manifest(path)
        settings = resolve_settings(manifest, node_url=node_url)
        settings.agent_manifest  # noqa: B018 - refuses a bad CORAL_AGENT_NAME before starting
        return serve_settings(settings)
    except (ManifestError, ValidationError) as exc:
        print(f"coral-agent serve: {exc}", file=sys.stderr)
        return 2


def run_module(factory: AgentFactory, argv: list[str] | None = None) -> int:
    """Entry point of ``python -m coral_sdk.agents.<x>``: manifest from argv or env."""
    args = sys.argv[1:] if argv is None else argv
    ref = args[0] if args else os.environ.get("CORAL_AGENT_MANIFEST")
    if not ref:
        print(
            "usage: python -m <agent module> MANIFEST (or set CORAL_AGENT_MANIFEST)",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=os.environ.get("CORAL_LOG_LEVEL", "INFO").upper())
    try:
        settings = resolve_settings(load_manifest(ref))
        return serve_settings(settings, factory)
    except ManifestError as exc:
        print(f"{ref}: {exc}", file=sys.stderr)
        return 2


def settings_env(settings: ServeSettings) -> dict[str, str]:
    """The environment variables that carry ``settings`` to a child process."""
    env = {
        "CORAL_NODE_URL": settings.node_url,
        "CORAL_AGENT_KEY_FILE": str(settings.key_file),
        "CORAL_AGENT_NAME": settings.agent_manifest.name,
        "CORAL_REPLICA_INDEX": str(settings.replica.index),
        "CORAL_REPLICA_COUNT": str(settings.replica.count),
    }
    from coral_sdk.registry import option_env_var

    env.update({option_env_var(k): _env_value(v) for k, v in settings.options.items()})
    return env


def _env_value(value: OptionValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _run_command(settings: ServeSettings) -> int:
    runtime = settings.manifest.runtimes.executable
    assert runtime is not None
    env = {**os.environ, **runtime.env, **settings_env(settings)}
    return subprocess.call(runtime.argv(), env=env)


def main(argv: list[str] | None = None) -> int:
    """``python -m coral_sdk.serve MANIFEST [--node URL]``: ``coral-agent serve`` without
    loading every model's command line first."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m coral_sdk.serve")
    parser.add_argument("manifest", help="registry manifest path or name")
    parser.add_argument("--node", default=None, help="node HTTP URL")
    args = parser.parse_args(argv)
    return serve_manifest(args.manifest, node_url=args.node)


if __name__ == "__main__":
    sys.exit(main())
