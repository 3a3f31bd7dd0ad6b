"""coral-server compatible sessions: agent registry, session graphs, agent runtimes.

The domain side of the coral-server drop-in. ``manifest`` reads
``coral-agent.toml`` (editions 3 and 4), ``registry`` scans folders of them,
``graph`` checks a ``SessionRequest`` against the registry, ``runtime``
launches and supervises agent processes, and ``service`` runs sessions over
the coordination engine. ``launcher`` (with ``launch_manifest``) is the
node's admin launcher: registry agents started as supervised replicas.
No HTTP here: ``coral.api.coralserver`` and ``coral.api.http.launcher`` adapt it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coral.sessions.registry import AgentRegistry
    from coral.sessions.service import SessionAgentKeys, SessionManager, SessionServerSettings

__all__ = [
    "AgentRegistry",
    "SessionAgentKeys",
    "SessionManager",
    "SessionServerSettings",
]

#: Where each name lives: imported on first use, so reading the coral-server
#: config (``coral.sessions.config``) at node start does not load the sessions domain.
_HOMES = {
    "AgentRegistry": "coral.sessions.registry",
    "SessionAgentKeys": "coral.sessions.service",
    "SessionManager": "coral.sessions.service",
    "SessionServerSettings": "coral.sessions.service",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
