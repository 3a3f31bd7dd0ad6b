"""The federation subsystem: builds the federation driver over its adapters and runs its loops.

Wiring only: the driver (``coral.federation.driver``) gets the SQLite
federation store, the gRPC peer transport, the coordination services and the
node's key hand-over; the routes live in ``coral.api.http.federation`` and
``coral.api.http.ledger_relay``, the node-to-node servicer in
``coral.api.grpc.federation``. Cross-node payments (``coral.ledger.relay``)
ride the same outbox when the ledger runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coral.api.context import NodeContext, need
from coral.api.grpc.federation import installer
from coral.api.grpc.federation_client import GrpcPeerTransport
from coral.api.http import federation as federation_routes
from coral.api.http import ledger_relay as ledger_relay_routes
from coral.federation.driver import FederationNode
from coral.federation.peer_record import PeerAddresses
from coral.ledger.relay import PaymentRelay
from coral.metrics import NodeMetrics
from coral.node.keys import load_node_handover
from coral.node.subsystems import Subsystem
from coral.store.federation_sqlite import FederationStore

if TYPE_CHECKING:
    from coral.node.daemon import Node


class PrometheusFederationMetrics:
    """``FederationMetrics`` on the node's prometheus registry."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def gossip_round(self, peers: int) -> None:
        """Count a round and set the peer gauge."""
        self.metrics.gossip_rounds.inc()
        self.metrics.peers.set(peers)

    def rejected(self, reason: str) -> None:
        """Count a refused gossip record."""
        self.metrics.rejections.labels("federation", reason).inc()

    def outbox_depth(self, depth: int) -> None:
        """Set the outbox gauge."""
        self.metrics.outbox_depth.set(depth)


class FederationSubsystem(Subsystem):
    """Gossip of peers and the directory, cross-node threads, the durable outbox."""

    name = "federation"

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        store = FederationStore(node.db)
        await store.migrate()
        gateway = need(ctx.gateway, "gateway")
        self.driver = FederationNode(
            ctx.identity,
            store=store,
            transport=GrpcPeerTransport(ctx.identity),
            directory=need(ctx.directory, "directory"),
            coordination=need(ctx.coordination, "coordination"),
            threads=need(ctx.coordination_store, "coordination_store"),
            gateway=gateway,
            metrics=PrometheusFederationMetrics(ctx.metrics),
            peer_record_ttl_ms=int(ctx.config.peer_record_ttl_s * 1000),
            bootstrap=node.config.bootstrap_peers,
            handover=load_node_handover(ctx.config.keys_dir, ctx.identity),
        )
        await self.driver.open()
        ctx.federation = self.driver
        gateway.forwarder = self.driver
        self.grpc_installers.append(installer(self.driver))
        self.http_installers.append(federation_routes.install)
        if ctx.ledger is not None:  # cross-node payments ride the same outbox
            ctx.payment_relay = PaymentRelay(
                ctx.identity.did,
                ctx.ledger,
                need(ctx.ledger_access, "ledger_access"),
                self.driver,
            )
            self.http_installers.append(ledger_relay_routes.install)

    async def started(self, node: Node, ctx: NodeContext) -> None:
        self.driver.publish_self(PeerAddresses(grpc=ctx.grpc_address, http=ctx.http_address))
        self.background(self.driver.run_gossip(node.config.gossip_interval_s))
        self.background(self.driver.run_outbox())

    async def close(self, node: Node, ctx: NodeContext) -> None:
        await self.driver.close()
