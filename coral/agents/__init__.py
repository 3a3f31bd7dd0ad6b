"""The agent directory: registration, unique names bound to a DID, key rotation, local launches.

``AgentDirectory`` is the use-case service (over the ``AgentStore`` port);
``keyrotation`` holds the signed hand-overs from an old key to a new one;
``keyfile`` reads and writes identity key files; ``launcher`` is the table
and supervisor of agent processes the node starts itself.
"""

from coral.agents.directory import (
    AgentDirectory,
    AgentNotRegistered,
    AgentStore,
    AmbiguousName,
    NameTaken,
    StaleRecord,
)
from coral.agents.keyfile import load_or_create_identity
from coral.agents.keyrotation import KeyHandover, RotationRefused, issue_handover, parse_handover

__all__ = [
    "AgentDirectory",
    "AgentNotRegistered",
    "AgentStore",
    "AmbiguousName",
    "KeyHandover",
    "NameTaken",
    "RotationRefused",
    "StaleRecord",
    "issue_handover",
    "load_or_create_identity",
    "parse_handover",
]
