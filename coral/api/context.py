"""What adapters may use: the typed services the composition root built.

Adapters receive one ``NodeContext`` instead of reaching for globals. The
composition root (``coral.node``) fills in each subsystem's services while it
sets the node up, in start order; a field stays ``None`` when its subsystem is
not part of this node. Handlers ask for a service with ``need``, which turns a
missing subsystem into a typed error instead of an ``AttributeError``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from coral import PROTOCOL_VERSION, __version__
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.signing import sign_object
from coral.protocol.verify import MessageVerifier

if TYPE_CHECKING:
    from coral.agents.directory import AgentDirectory
    from coral.api.a2a.outbound import A2AProxies
    from coral.api.mcp.held_agents import HeldAgents
    from coral.api.mcp.tools import CoralTools
    from coral.coordination.gateway import MessageGateway
    from coral.coordination.ports import ReplicatedThreads
    from coral.coordination.service import CoordinationService
    from coral.federation.driver import FederationNode
    from coral.ledger.access import LedgerAccess
    from coral.ledger.relay import PaymentRelay
    from coral.ledger.service import LedgerService
    from coral.sessions.launcher import AgentLauncher
    from coral.sessions.service import SessionManager
    from coral.teams.service import TeamsService

NODE_INFO_DOMAIN = b"coral/v1/node-info\x00"

T = TypeVar("T")


class SubsystemDisabled(CoralError):
    """The call needs a subsystem this node does not run."""

    reason = "subsystem_disabled"
    category = "unavailable"


class NodeNotReady(CoralError):
    """The node failed to finish starting; what waited for it is refused."""

    reason = "node_not_ready"
    category = "unavailable"


def need(service: T | None, name: str) -> T:
    """``service``, or SubsystemDisabled naming it when this node does not run it.

    Raises:
        SubsystemDisabled: ``service`` is None.
    """
    if service is None:
        raise SubsystemDisabled(f"the {name} subsystem is not enabled on this node")
    return service


@dataclass
class NodeContext:
    """The running node's identity, configuration and services, each typed."""

    config: Config
    identity: Identity
    metrics: NodeMetrics
    verifier: MessageVerifier
    admin_token: str
    started_at: int
    grpc_address: str = ""
    http_address: str = ""
    # coordination subsystem
    directory: AgentDirectory | None = None
    coordination: CoordinationService | None = None
    coordination_store: ReplicatedThreads | None = None
    gateway: MessageGateway | None = None
    # ledger subsystem
    ledger: LedgerService | None = None
    ledger_access: LedgerAccess | None = None
    # federation subsystem (the payment relay rides its outbox when the ledger runs)
    federation: FederationNode | None = None
    payment_relay: PaymentRelay | None = None
    # teams, interop, sessions, launcher subsystems
    teams: TeamsService | None = None
    mcp_tools: CoralTools | None = None
    held_agents: HeldAgents | None = None
    a2a_proxies: A2AProxies | None = None
    sessions: SessionManager | None = None
    launcher: AgentLauncher | None = None
    #: Pending while the node sets up its late subsystems (after the servers
    #: listen; see ``coral.node.subsystems.base``); None once they are set up.
    wiring: asyncio.Future[None] | None = None

    async def wired(self) -> None:
        """Wait until the late subsystems are set up (at once when they are).

        Raises:
            NodeNotReady: their set-up failed (the node's start fails too).
        """
        wiring = self.wiring
        if wiring is not None:
            await asyncio.shield(wiring)

    def enabled_subsystems(self) -> list[str]:
        """Names of the services this node runs (the dashboard lists them)."""
        core = ["directory", "coordination", "gateway"]
        optional = (
            "coordination_store ledger ledger_access federation payment_relay teams "
            "mcp_tools held_agents a2a_proxies sessions launcher"
        ).split()
        return [name for name in core if getattr(self, name) is not None] + sorted(
            name for name in optional if getattr(self, name) is not None
        )

    def node_info(self) -> dict[str, Any]:
        """The node's self-description, signed by its key."""
        body = {
            "node_id": self.identity.did,
            "version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "grpc_address": self.grpc_address,
            "http_address": self.http_address,
            "started_at": self.started_at,
        }
        return {**body, "signature": sign_object(NODE_INFO_DOMAIN, body, self.identity)}
