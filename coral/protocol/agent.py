"""Agent manifests and signed agent records (the directory's entries).

A registration binds an agent's did:key to its manifest. The agent signs the
record body; its home node countersigns the body plus the agent signature, so
any node can verify offline both that the agent asked to be listed and which
node vouches for it. ``version`` grows with every change; a tombstone
(``deleted=True``) with a higher version removes the agent everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coral.protocol.errors import InvalidMessage, SignatureError
from coral.protocol.identity import Identity
from coral.protocol.message import Did, Millis
from coral.protocol.signing import sign_object, verify_object

AGENT_DOMAIN = b"coral/v1/agent-record\x00"
NODE_COUNTERSIGN_DOMAIN = b"coral/v1/agent-record-countersign\x00"

_STRICT = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use

AgentName = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=32)]
Capability = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.:/-]{0,63}$")]


class Price(BaseModel):
    """What one unit of a capability costs, in integer minor units."""

    model_config = _STRICT
    capability: Capability
    amount: Annotated[int, Field(ge=0, le=2**53 - 1)]
    currency: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$")] = "CRL"
    unit: Annotated[str, Field(max_length=32)] = "request"


class AgentManifest(BaseModel):
    """What an agent says about itself (coral-agent.toml's [agent] in spirit)."""

    model_config = _STRICT
    name: AgentName
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")] = "0.1.0"
    description: Annotated[str, Field(max_length=4096)] = ""
    capabilities: tuple[Capability, ...] = ()
    prices: tuple[Price, ...] = ()
    endpoints: tuple[Annotated[str, Field(max_length=32)], ...] = ("coral",)


class AgentRecord(BaseModel):
    """A directory entry: manifest bound to an agent key, vouched for by a node."""

    model_config = _STRICT
    agent: Did
    home_node: Did
    manifest: AgentManifest
    version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    updated_at: Millis
    deleted: bool = False
    agent_signature: str | None = None
    node_signature: str | None = None

    def body(self) -> dict[str, Any]:
        """The fields the agent signs."""
        return self.model_dump(mode="json", exclude={"agent_signature", "node_signature"})

    def countersigned_body(self) -> dict[str, Any]:
        """The fields the home node signs: the body plus the agent's signature."""
        return {**self.body(), "agent_signature": self.agent_signature}


def sign_record_as_agent(record: AgentRecord, agent: Identity) -> AgentRecord:
    """Return the record with the agent's signature (the agent must be its subject)."""
    if agent.did != record.agent:
        raise SignatureError("only the agent itself signs its record")
    return record.model_copy(
        update={"agent_signature": sign_object(AGENT_DOMAIN, record.body(), agent)}
    )


def countersign_record(record: AgentRecord, node: Identity) -> AgentRecord:
    """Return the record countersigned by its home node."""
    if node.did != record.home_node:
        raise SignatureError("only the home node countersigns a record")
    verify_agent_signature(record)
    signature = sign_object(NODE_COUNTERSIGN_DOMAIN, record.countersigned_body(), node)
    return record.model_copy(update={"node_signature": signature})


def verify_agent_signature(record: AgentRecord) -> None:
    """Raise SignatureError unless the agent signed this record body."""
    if not record.agent_signature:
        raise SignatureError("agent record is not signed by the agent", reason="missing_signature")
    verify_object(AGENT_DOMAIN, record.body(), record.agent_signature, record.agent)


def verify_record(record: AgentRecord) -> None:
    """Verify both signatures; raise SignatureError on the first that fails."""
    verify_agent_signature(record)
    if not record.node_signature:
        raise SignatureError(
            "agent record lacks its node countersignature", reason="missing_signature"
        )
    verify_object(
        NODE_COUNTERSIGN_DOMAIN,
        record.countersigned_body(),
        record.node_signature,
        record.home_node,
    )


def parse_record(obj: Any) -> AgentRecord:
    """Validate a JSON object as an AgentRecord with a typed error."""
    try:
        return AgentRecord.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise InvalidMessage(f"{where}: {first['msg']}", reason="invalid_record") from None
