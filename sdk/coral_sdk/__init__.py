"""coral_sdk: write Coral agents, and host models as agents.

The two entry points: ``Agent`` (subclass it, override ``on_mention``) and
``CoralClient`` (every node operation, signed with the agent's key).
"""

from coral.protocol.agent import AgentManifest, Price
from coral_sdk.agent import Agent, Incoming, TaskHandle, TaskUpdate, Updates
from coral_sdk.client import CoralApiError, CoralClient, NodeUnreachable
from coral_sdk.paths import default_key_file

__all__ = [
    "Agent",
    "AgentManifest",
    "CoralApiError",
    "CoralClient",
    "Incoming",
    "NodeUnreachable",
    "Price",
    "TaskHandle",
    "TaskUpdate",
    "Updates",
    "default_key_file",
]
