"""Run a model agent's replicas on a Ray cluster with Ray Serve (optional extra ``ray``).

Design: one Coral-facing *front* agent holds the agent's identity and is the
only reader of its inbox, so every request is taken exactly once. It forwards
each request payload to a Ray Serve deployment whose N replicas each build the
manifest's model agent (own weights, device and ``DynamicBatcher``) and answer
through the same ``handle_payload`` path a standalone agent uses; Ray spreads
the calls over replicas and places them on cluster nodes (GPUs via
``gpus_per_replica``). Without Ray, use hash-sharded replicas instead (see
``ReplicaShard``). Run::

    python -m coral_sdk.ray_serve registry/trm.toml --replicas 4 --node http://host:7421
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import replace
from typing import Any

from coral.protocol.identity import Identity
from coral_sdk.model_agent import ModelAgent, error_reply
from coral_sdk.registry import ManifestError, find_manifest, load_manifest
from coral_sdk.serve import agent_factory, resolve_settings, serve_agents

log = logging.getLogger("coral_sdk.ray_serve")


class ModelReplica:
    """One Ray Serve replica: the manifest's model agent, used without a node connection."""

    def __init__(self, manifest_path: str, options: dict[str, Any] | None = None) -> None:
        manifest = load_manifest(manifest_path)
        settings = resolve_settings(
            manifest, env={}, option_overrides=options, node_url="http://unused.invalid"
        )
        factory = agent_factory(manifest)
        if factory is None:
            raise ManifestError("runtimes.executable.module: Ray replicas need a Python agent")
        self.agent = factory(replace(settings, identity=Identity.generate()))
        self._started = False

    async def __call__(self, payload: Any) -> dict[str, Any]:
        """Answer one request payload (batched with concurrent calls on this replica)."""
        if not self._started:
            await self.agent.batcher.start()
            self._started = True
        reply = await self.agent.handle_payload(payload)
        return {**reply, "_replica_pid": os.getpid()} if "error" not in reply else reply

    def health(self) -> dict[str, Any]:
        """The agent's health plus this replica's process id."""
        return {**self.agent.health(), "pid": os.getpid()}


class RayFrontAgent(ModelAgent[Any, dict[str, Any]]):
    """The Coral-facing agent: forwards each mention's payload to the Ray Serve deployment."""

    uses_torch = False

    def __init__(self, *args: Any, handle: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handle = handle

    async def handle_payload(self, payload: Any) -> dict[str, Any]:
        """Let a Ray replica parse and answer; transport failures become error replies."""
        try:
            reply: dict[str, Any] = await self.handle.remote(payload)
        except Exception as exc:
            log.exception("ray replica call failed")
            return error_reply("replica_failed", f"{type(exc).__name__}: {exc}")
        if not self.options.get("report_replica"):
            reply.pop("_replica_pid", None)
        return reply


def deploy(
    manifest_ref: str,
    *,
    replicas: int = 2,
    options: dict[str, Any] | None = None,
    cpus_per_replica: float = 1.0,
    gpus_per_replica: float = 0.0,
) -> Any:
    """Start (or update) the Ray Serve application for a manifest; returns its handle.

    Ray must already be initialised (``ray.init(...)``).
    """
    from ray import serve

    path = str(find_manifest(manifest_ref).resolve())
    name = load_manifest(path).agent.name
    deployment: Any = serve.deployment(
        ModelReplica,
        name=f"coral-{name}",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica},
    )
    return serve.run(deployment.bind(path, options or {}), name=f"coral-{name}", route_prefix=None)


def front_agent(
    manifest_ref: str, handle: Any, *, node_url: str | None = None, report_replica: bool = False
) -> RayFrontAgent:
    """The front agent for a deployed manifest (connection settings as for ``serve``)."""
    settings = resolve_settings(load_manifest(manifest_ref), node_url=node_url)
    kwargs = settings.agent_kwargs()
    kwargs["options"] = {"report_replica": report_replica}
    return RayFrontAgent(handle=handle, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m coral_sdk.ray_serve MANIFEST --replicas N [--node URL] [--address ADDR]``."""
    parser = argparse.ArgumentParser(prog="python -m coral_sdk.ray_serve", description=__doc__)
    parser.add_argument("manifest")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--node", default=None, help="node HTTP URL")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--gpus-per-replica", type=float, default=0.0)
    parser.add_argument("--cpus-per-replica", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("CORAL_LOG_LEVEL", "INFO").upper())
    try:
        import ray
    except ImportError:
        print("Ray is not installed: pip install 'ray[serve]'", file=sys.stderr)
        return 2
    ray.init(address=args.address)
    try:
        handle = deploy(
            args.manifest,
            replicas=args.replicas,
            cpus_per_replica=args.cpus_per_replica,
            gpus_per_replica=args.gpus_per_replica,
        )
        agent = front_agent(args.manifest, handle, node_url=args.node)
    except ManifestError as exc:
        print(f"{args.manifest}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve_agents([agent]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
