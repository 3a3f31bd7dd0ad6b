"""The agent directory: registration, unique names bound to a DID, key rotation, key files.

``AgentDirectory`` is the use-case service (over the ``AgentStore`` port in
``ports``, with its in-memory twin ``MemoryAgentStore`` in ``memory``);
``keyrotation`` holds the signed hand-overs from an old key to a new one;
``keyfile`` reads and writes identity key files. Agent processes the node
launches itself belong to ``coral.sessions.launcher``.
"""

from coral.agents.directory import (
    AgentDirectory,
    AgentNotRegistered,
    AmbiguousName,
    NameTaken,
    StaleRecord,
)
from coral.agents.keyfile import load_or_create_identity
from coral.agents.keyrotation import KeyHandover, RotationRefused, issue_handover, parse_handover
from coral.agents.memory import MemoryAgentStore
from coral.agents.ports import AgentStore

__all__ = [
    "AgentDirectory",
    "AgentNotRegistered",
    "AgentStore",
    "AmbiguousName",
    "KeyHandover",
    "MemoryAgentStore",
    "NameTaken",
    "RotationRefused",
    "StaleRecord",
    "issue_handover",
    "load_or_create_identity",
    "parse_handover",
]
