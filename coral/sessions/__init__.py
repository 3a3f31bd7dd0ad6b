"""coral-server compatible sessions: agent registry, session graphs, agent runtimes.

The domain side of the coral-server drop-in. ``manifest`` reads
``coral-agent.toml`` (editions 3 and 4), ``registry`` scans folders of them,
``graph`` checks a ``SessionRequest`` against the registry, ``runtime``
launches and supervises agent processes, and ``service`` runs sessions over
the coordination engine. ``launcher`` (with ``launch_manifest``) is the
node's admin launcher: registry agents started as supervised replicas.
No HTTP here: ``coral.api.coralserver`` and ``coral.api.http.launcher`` adapt it.
"""

from coral.sessions.registry import AgentRegistry
from coral.sessions.service import (
    SessionAgentKeys,
    SessionManager,
    SessionServerSettings,
)

__all__ = [
    "AgentRegistry",
    "SessionAgentKeys",
    "SessionManager",
    "SessionServerSettings",
]
