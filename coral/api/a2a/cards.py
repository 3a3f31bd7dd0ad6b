"""A2A agent cards (protocol 1.0) for Coral agents and for the node's router agent.

An agent's base URL is ``{http}/a2a/{name}``: its card is at
``{base}/.well-known/agent-card.json``, JSON-RPC is ``POST {base}`` and the
HTTP+JSON operations are ``{base}/message:send`` and so on. gRPC has one
service for every agent, so the gRPC interface (``grpc://host:port``, or
``grpcs://`` with TLS) carries the agent's name as its ``tenant``. The router
lives at ``{http}/a2a``. For 0.3 clients the JSON also has the legacy ``url``
(JSON-RPC, served by the 0.3 compatibility layer); no other 0.3 interface is
advertised, because no other is served.

Cards are signed (A2A 1.0 section 8.4): a JWS with EdDSA over the RFC 8785
canonical card, by the node key; the ``kid`` is the node's ``did:key`` key
id, which resolves offline, and ``jku`` points at the node's JWKS.
"""

from __future__ import annotations

from typing import Any

from a2a.types import a2a_pb2
from a2a.utils.signing import create_agent_card_signer
from google.protobuf import json_format
from jwt import PyJWK

from coral import __version__
from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity, b64u_encode

PROTOCOL_VERSION = "1.0"
MODES = ["text/plain", "application/json"]
ROUTER_NAME = "coral-node"
#: Where the node publishes its card-signing key as a JWK Set.
JWKS_PATH = "/.well-known/jwks.json"


def base_url(http: str, name: str | None) -> str:
    """An agent's A2A base URL (``None``: the router's)."""
    return f"{http}/a2a/{name}" if name else f"{http}/a2a"


def grpc_url(grpc: str, tls: bool = False) -> str:
    """The gRPC interface URL for a ``host:port`` address."""
    return f"{'grpcs' if tls else 'grpc'}://{grpc}"


def interfaces(
    http: str, grpc: str, name: str | None, *, tls: bool = False
) -> list[a2a_pb2.AgentInterface]:
    """JSON-RPC, HTTP+JSON and gRPC interfaces of one agent (``None``: the router)."""
    base = base_url(http, name)
    return [
        a2a_pb2.AgentInterface(
            url=base, protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION
        ),
        a2a_pb2.AgentInterface(
            url=base, protocol_binding="HTTP+JSON", protocol_version=PROTOCOL_VERSION
        ),
        a2a_pb2.AgentInterface(
            url=grpc_url(grpc, tls),
            protocol_binding="GRPC",
            protocol_version=PROTOCOL_VERSION,
            tenant=name or "",
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


def capabilities(*, extended: bool = False) -> a2a_pb2.AgentCapabilities:
    """What every card served by the node declares."""
    return a2a_pb2.AgentCapabilities(
        streaming=True, push_notifications=True, extended_agent_card=extended
    )


def agent_card(
    record: AgentRecord, http: str, grpc: str, *, tls: bool = False, extended: bool = False
) -> a2a_pb2.AgentCard:
    """The A2A card of one Coral agent."""
    manifest = record.manifest
    return a2a_pb2.AgentCard(
        name=manifest.name,
        description=manifest.description or f"Coral agent {manifest.name}",
        version=manifest.version,
        supported_interfaces=interfaces(http, grpc, manifest.name, tls=tls),
        capabilities=capabilities(extended=extended),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[skill_of(record)],
        provider=a2a_pb2.AgentProvider(organization="Coral Node", url=http),
    )


def router_card(
    records: list[AgentRecord], http: str, grpc: str, *, tls: bool = False, extended: bool = False
) -> a2a_pb2.AgentCard:
    """The node's own card: a router whose skills are the registered agents."""
    return a2a_pb2.AgentCard(
        name=ROUTER_NAME,
        description=(
            "Coral node router: address a registered agent with metadata.agent or by "
            "starting the text with @name; each agent also has its own card at "
            "/a2a/{name}/.well-known/agent-card.json"
        ),
        version=__version__,
        supported_interfaces=interfaces(http, grpc, None, tls=tls),
        capabilities=capabilities(extended=extended),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[skill_of(r) for r in records] or [_ROUTING_SKILL],
        provider=a2a_pb2.AgentProvider(organization="Coral Node", url=http),
    )


def key_id(identity: Identity) -> str:
    """The card-signing key's id: the node's did:key with its key fragment."""
    return f"{identity.did}#{identity.did.removeprefix('did:key:')}"


def jwks(identity: Identity) -> dict[str, Any]:
    """The node's card-signing key as a JWK Set (OKP / Ed25519)."""
    return {
        "keys": [
            {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64u_encode(identity.public_key),
                "kid": key_id(identity),
                "alg": "EdDSA",
                "use": "sig",
            }
        ]
    }


def sign_card(card: a2a_pb2.AgentCard, identity: Identity, http: str) -> a2a_pb2.AgentCard:
    """Add the node's JWS signature to ``card`` (replacing earlier ones) and return it."""
    del card.signatures[:]
    key = PyJWK(
        {
            "kty": "OKP",
            "crv": "Ed25519",
            "d": b64u_encode(identity.seed),
            "x": b64u_encode(identity.public_key),
        },
        algorithm="EdDSA",
    )
    signer = create_agent_card_signer(
        key,
        {"alg": "EdDSA", "typ": "JOSE", "kid": key_id(identity), "jku": http + JWKS_PATH},
    )
    return signer(card)


def card_json(card: a2a_pb2.AgentCard) -> dict[str, Any]:
    """The card as JSON, plus the 0.3 fields older clients read (JSON-RPC only)."""
    data: dict[str, Any] = json_format.MessageToDict(card)
    jsonrpc = card.supported_interfaces[0].url
    data.update(url=jsonrpc, preferredTransport="JSONRPC", protocolVersion="0.3.0")
    return data
