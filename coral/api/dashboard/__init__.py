"""The operator dashboard: a static page served by the node, fed by one JSON snapshot.

``DashboardSubsystem`` wires it into a node; see ``routes`` for the endpoints
and ``snapshot`` for what the page shows.
"""

from coral.api.dashboard.subsystem import DashboardSubsystem

__all__ = ["DashboardSubsystem"]
