"""coral-server compatible sessions: agent registry, session graphs, agent runtimes.

The domain side of the coral-server drop-in. ``manifest`` reads
``coral-agent.toml`` (editions 3 and 4), ``registry`` scans folders of them,
``graph`` checks a ``SessionRequest`` against the registry, ``runtime``
launches and supervises agent processes, and ``service`` runs sessions over
the coordination engine. No HTTP here: ``coral.api.coralserver`` adapts it.
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
