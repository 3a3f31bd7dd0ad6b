"""The federation subsystem: builds the federation driver over its adapters and runs its loops.

Wiring only: the driver (``coral.federation.driver``) gets the SQLite
federation store, the gRPC peer transport, the coordination services and the
node's key hand-over; the routes live in ``coral.api.http.federation`` and
``coral.api.http.ledger_relay``, the node-to-node servicer in
``coral.api.grpc.federation``. Cross-node payments (``coral.ledger.relay``)
ride the same outbox when the ledger runs.

A late subsystem (``coral.node.subsystems.base``): set up after the servers
listen. Until then peers' calls wait in a stand-in servicer, submits wait at
the gateway (no message is routed before the forwarder and the replication
hook are in place), and local agent records stored meanwhile are kept and
handed to the driver once it is open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import grpc

from coral.api.context import NodeContext, need
from coral.api.lazy import LazyServicer
from coral.metrics import NodeMetrics
from coral.node.subsystems import Subsystem
from coral.v1 import federation_pb2, federation_pb2_grpc

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
    late = True
    late_paths = ("/v1/peers", "/v1/admin/peers", "/v1/ledger/remote-payments")
    late_modules = (
        "coral.api.grpc.federation",
        "coral.api.grpc.federation_client",
        "coral.api.http.federation",
        "coral.api.http.ledger_relay",
        "coral.federation.driver",
        "coral.federation.peer_record",
        "coral.ledger.relay",
        "coral.store.federation_sqlite",
    )

    def prepare(self, node: Node, ctx: NodeContext) -> None:
        """Serve peers' calls through a servicer that waits; keep early local records."""
        self.servicer = LazyServicer(ctx.wired)
        self._early_records: list[Any] | None = []
        need(ctx.directory, "directory").listeners.append(self._keep_early)
        self.grpc_installers.append(self._install_grpc)

    def _install_grpc(self, server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
        federation_pb2_grpc.add_FederationServiceServicer_to_server(
            cast(Any, self.servicer), server
        )
        return [federation_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name]

    def _keep_early(self, record: Any) -> None:
        if self._early_records is not None:
            self._early_records.append(record)

    async def setup(self, node: Node, ctx: NodeContext) -> None:
        from coral.api.grpc.federation import FederationServicer
        from coral.api.grpc.federation_client import GrpcPeerTransport
        from coral.api.http import federation as federation_routes
        from coral.api.http import ledger_relay as ledger_relay_routes
        from coral.federation.driver import FederationNode
        from coral.federation.peer_record import PeerAddresses
        from coral.ledger.relay import PaymentRelay
        from coral.node.keys import load_node_handover
        from coral.store.federation_sqlite import FederationStore

        store = FederationStore(node.db)
        await store.migrate()
        gateway = need(ctx.gateway, "gateway")
        directory = need(ctx.directory, "directory")
        self.driver = FederationNode(
            ctx.identity,
            store=store,
            transport=GrpcPeerTransport(ctx.identity),
            directory=directory,
            coordination=need(ctx.coordination, "coordination"),
            threads=need(ctx.coordination_store, "coordination_store"),
            gateway=gateway,
            metrics=PrometheusFederationMetrics(ctx.metrics),
            peer_record_ttl_ms=int(ctx.config.peer_record_ttl_s * 1000),
            bootstrap=node.config.bootstrap_peers,
            handover=load_node_handover(ctx.config.keys_dir, ctx.identity),
        )
        await self.driver.open()
        # Records stored before the driver listened to the directory (open() read the
        # directory too; merging one twice changes nothing).
        early, self._early_records = self._early_records or [], None
        directory.listeners.remove(self._keep_early)
        for record in early:
            self.driver.on_local_record(record)
        # The servers already listen: publish our record now, so the first Hello
        # a peer sends (it may be waiting already) finds it.
        self.driver.publish_self(PeerAddresses(grpc=ctx.grpc_address, http=ctx.http_address))
        ctx.federation = self.driver
        gateway.forwarder = self.driver
        self.servicer.load(FederationServicer(ctx, self.driver))
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
        self.background(self.driver.run_gossip(node.config.gossip_interval_s))
        self.background(self.driver.run_outbox())

    async def close(self, node: Node, ctx: NodeContext) -> None:
        await self.driver.close()
