"""The local agent registry: ``coral-agent.toml`` files found by folder or glob.

One bad file is logged and listed in ``problems``; it never hides the good
ones (coral-server issue #164: one bad agent blanked the whole registry).
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coral.protocol.errors import NotFound
from coral.sessions.manifest import InvalidManifest, RegistryAgent, load_manifest

log = logging.getLogger("coral.sessions.registry")

MANIFEST_NAME = "coral-agent.toml"


class AgentNotInRegistry(NotFound):
    """No registry agent has this name and version."""

    reason = "agent_not_found"


def coral_home_agents() -> Path:
    """``~/.coral/agents``, where coral-server and coralizer keep installed agents."""
    return Path.home() / ".coral" / "agents"


def _candidates(pattern: str) -> list[Path]:
    path = Path(pattern).expanduser()
    if any(ch in pattern for ch in "*?["):
        found = [Path(p) for p in sorted(glob.glob(str(path), recursive=True))]
    else:
        found = [path]
    out: list[Path] = []
    for item in found:
        if item.is_dir():
            direct = item / MANIFEST_NAME
            out.extend([direct] if direct.exists() else sorted(item.glob(f"*/{MANIFEST_NAME}")))
            out.extend(sorted(item.glob(f"*/*/{MANIFEST_NAME}")))
        elif item.suffix == ".toml":
            out.append(item)
    return out


@dataclass
class AgentRegistry:
    """Agents by (name, version), loaded from a list of paths or glob patterns."""

    patterns: list[str] = field(default_factory=list)
    agents: dict[tuple[str, str], RegistryAgent] = field(default_factory=dict)
    #: ``path: why`` for each file that was skipped at the last scan.
    problems: list[str] = field(default_factory=list)

    @classmethod
    def scan(cls, patterns: Iterable[str]) -> AgentRegistry:
        """Load every manifest the patterns find; bad ones are logged and skipped."""
        registry = cls(list(patterns))
        registry.rescan()
        return registry

    def rescan(self) -> None:
        """Read the files again (a bad edit keeps nothing but what is valid)."""
        agents: dict[tuple[str, str], RegistryAgent] = {}
        problems: list[str] = []
        seen: set[Path] = set()
        for pattern in self.patterns:
            for path in _candidates(pattern):
                if path in seen or not path.exists():
                    continue
                seen.add(path)
                try:
                    agent = load_manifest(path)
                except InvalidManifest as exc:
                    log.warning("registry: skipping %s", exc.detail)
                    problems.append(exc.detail)
                    continue
                key = (agent.name, agent.version)
                if key in agents:
                    msg = f"{path}: duplicate agent {agent.name} {agent.version}; first one kept"
                    log.warning("registry: %s", msg)
                    problems.append(msg)
                    continue
                agents[key] = agent
        self.agents, self.problems = agents, problems
        log.info("registry: %d agent(s), %d skipped", len(agents), len(problems))

    def resolve(self, name: str, version: str) -> RegistryAgent:
        """The agent with this exact name and version; AgentNotInRegistry otherwise."""
        agent = self.agents.get((name, version))
        if agent is None:
            raise AgentNotInRegistry(f"agent {name}:{version} is not in the local registry")
        return agent

    def catalog(self) -> list[dict[str, Any]]:
        """``GET /api/v1/registry``: the registry sources with their agents' versions."""
        versions: dict[str, list[str]] = {}
        for name, version in sorted(self.agents):
            versions.setdefault(name, []).append(version)
        return [
            {
                "identifier": {"type": "local"},
                "name": "local",
                "agents": [{"name": n, "versions": v} for n, v in versions.items()],
                "problems": list(self.problems),
            }
        ]
