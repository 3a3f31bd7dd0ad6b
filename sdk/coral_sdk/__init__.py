"""coral_sdk: write Coral agents, and host models as agents.

The two entry points: ``Agent`` (subclass it, override ``on_mention``) and
``CoralClient`` (every node operation, signed with the agent's key).
"""

from coral.protocol.agent import AgentManifest, Price
from coral_sdk.agent import Agent, Incoming, TaskHandle, TaskUpdate, Updates
from coral_sdk.client import CoralApiError, CoralClient

__all__ = [
    "Agent",
    "AgentManifest",
    "CoralApiError",
    "CoralClient",
    "Incoming",
    "Price",
    "TaskHandle",
    "TaskUpdate",
    "Updates",
]
