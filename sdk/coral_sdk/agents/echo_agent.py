"""A model-free agent: replies with the request it was given (for smoke tests and demos)."""

from __future__ import annotations

import os
from typing import Any

from coral.protocol.agent import AgentManifest
from coral_sdk.model_agent import ModelAgent, RequestRejected
from coral_sdk.serve import ServeSettings, run_module


class EchoAgent(ModelAgent[Any, Any]):
    """Echoes each request back as ``{"echo": request, "replica": index}``."""

    manifest = AgentManifest(name="echo", capabilities=("echo",))

    uses_torch = False

    def parse_request(self, payload: Any) -> Any:
        """Accept any non-empty request."""
        if payload in ("", None, {}, []):
            raise RequestRejected("empty request", reason="empty_request")
        return payload

    def infer_batch(self, requests: list[Any]) -> list[Any]:
        """Identity, batched."""
        prefix = str(self.options.get("prefix", ""))
        return [prefix + r if isinstance(r, str) else r for r in requests]

    def render(self, result: Any) -> dict[str, Any]:
        """The echoed request and which replica (and process) answered."""
        return {"echo": result, "replica": self.replica.index, "pid": os.getpid()}


def create_agent(settings: ServeSettings) -> EchoAgent:
    """Build the agent from its resolved serve settings."""
    return EchoAgent(**settings.agent_kwargs())


if __name__ == "__main__":
    raise SystemExit(run_module(create_agent))
