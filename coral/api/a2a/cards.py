"""A2A agent cards (protocol 1.0) for Coral agents and for the node's router agent.

Every interface carries the agent's name as its ``tenant``, so one JSON-RPC
dispatcher, one REST mount and one gRPC service serve every agent; the legacy
0.3 fields are added to the JSON for 0.3 clients (1.0 clients ignore them when
``supportedInterfaces`` is present).
"""

from __future__ import annotations

from typing import Any

from a2a.types import a2a_pb2
from google.protobuf import json_format

from coral import __version__
from coral.protocol.agent import AgentRecord

PROTOCOL_VERSION = "1.0"
MODES = ["text/plain", "application/json"]
ROUTER_NAME = "coral-node"


def interfaces(http: str, grpc: str, name: str | None) -> list[a2a_pb2.AgentInterface]:
    """JSON-RPC, HTTP+JSON and gRPC interfaces of one agent (``None``: the router)."""
    jsonrpc = f"{http}/a2a/{name}/jsonrpc" if name else f"{http}/a2a/jsonrpc"
    tenant = name or ""
    return [
        a2a_pb2.AgentInterface(
            url=jsonrpc,
            protocol_binding="JSONRPC",
            protocol_version=PROTOCOL_VERSION,
            tenant=tenant,
        ),
        a2a_pb2.AgentInterface(
            url=f"{http}/a2a",
            protocol_binding="HTTP+JSON",
            protocol_version=PROTOCOL_VERSION,
            tenant=tenant,
        ),
        a2a_pb2.AgentInterface(
            url=grpc, protocol_binding="GRPC", protocol_version=PROTOCOL_VERSION, tenant=tenant
        ),
    ]


_ROUTING_SKILL = a2a_pb2.AgentSkill(
    id="route",
    name="route",
    description="Routes a message to a Coral agent by name.",
    tags=["coral"],
)


def skill_of(record: AgentRecord) -> a2a_pb2.AgentSkill:
    """One Coral agent as a skill of the router card."""
    manifest = record.manifest
    return a2a_pb2.AgentSkill(
        id=manifest.name,
        name=manifest.name,
        description=manifest.description or f"Coral agent {manifest.name}",
        tags=list(manifest.capabilities) or ["coral"],
    )


def agent_card(record: AgentRecord, http: str, grpc: str) -> a2a_pb2.AgentCard:
    """The A2A card of one Coral agent."""
    manifest = record.manifest
    return a2a_pb2.AgentCard(
        name=manifest.name,
        description=manifest.description or f"Coral agent {manifest.name}",
        version=manifest.version,
        supported_interfaces=interfaces(http, grpc, manifest.name),
        capabilities=a2a_pb2.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[skill_of(record)],
        provider=a2a_pb2.AgentProvider(organization="Coral Node", url=http),
    )


def router_card(records: list[AgentRecord], http: str, grpc: str) -> a2a_pb2.AgentCard:
    """The node's own card: a router whose skills are the registered agents."""
    return a2a_pb2.AgentCard(
        name=ROUTER_NAME,
        description=(
            "Coral node router: address a registered agent with metadata.agent or by "
            "starting the text with @name; each agent also has its own card at "
            "/a2a/{name}/.well-known/agent-card.json"
        ),
        version=__version__,
        supported_interfaces=interfaces(http, grpc, None),
        capabilities=a2a_pb2.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[skill_of(r) for r in records] or [_ROUTING_SKILL],
        provider=a2a_pb2.AgentProvider(organization="Coral Node", url=http),
    )


def card_json(card: a2a_pb2.AgentCard) -> dict[str, Any]:
    """The card as JSON, plus the 0.3 fields older clients read."""
    data: dict[str, Any] = json_format.MessageToDict(card)
    jsonrpc, rest, grpc = (i.url for i in card.supported_interfaces)
    data.update(
        url=jsonrpc,
        preferredTransport="JSONRPC",
        protocolVersion="0.3.0",
        additionalInterfaces=[
            {"url": jsonrpc, "transport": "JSONRPC"},
            {
                "url": rest + (f"/{card.name}" if card.name != ROUTER_NAME else ""),
                "transport": "HTTP+JSON",
            },
            {"url": grpc, "transport": "GRPC"},
        ],
    )
    return data
