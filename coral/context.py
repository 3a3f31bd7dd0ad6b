"""What adapters may use: the services the composition root built.

Adapters receive one ``NodeContext`` instead of reaching for globals. Fields
for optional subsystems stay ``None`` until the node enables them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coral import PROTOCOL_VERSION, __version__
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.protocol.identity import Identity
from coral.protocol.signing import sign_object
from coral.protocol.verify import MessageVerifier

if TYPE_CHECKING:
    from coral.agents.directory import AgentDirectory
    from coral.coordination.service import CoordinationService
    from coral.gateway import MessageGateway

NODE_INFO_DOMAIN = b"coral/v1/node-info\x00"


@dataclass
class NodeContext:
    """The running node's identity, configuration and services."""

    config: Config
    identity: Identity
    metrics: NodeMetrics
    verifier: MessageVerifier
    admin_token: str
    started_at: int
    grpc_address: str = ""
    http_address: str = ""
    directory: AgentDirectory | None = None
    coordination: CoordinationService | None = None
    gateway: MessageGateway | None = None
    services: dict[str, Any] = field(default_factory=dict)

    def require(self, name: str) -> Any:
        """A subsystem service that must exist for this call (RuntimeError otherwise)."""
        value = getattr(self, name, None)
        if value is None:
            value = self.services.get(name)
        if value is None:
            raise RuntimeError(f"the {name} subsystem is not enabled")
        return value

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
