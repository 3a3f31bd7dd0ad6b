"""The federation subsystem: builds the federation driver over its adapters and runs its loops.

Wiring only: the driver (``coral.federation.driver``) gets the federation
store (SQLite in the node's file, or PostgreSQL shared by the node's replicas
when the threads live there), the gRPC peer transport, the coordination
services and the node's key hand-over; the routes live in
``coral.api.http.federation`` and ``coral.api.http.ledger_relay``, the
node-to-node servicer in ``coral.api.grpc.federation``. Cross-node payments
(``coral.ledger.relay``) ride the same outbox when the ledger runs.

On PostgreSQL every replica answers peers (hello, gossip, deliveries) from
its copy of the shared gossip view, which a ``PostgresFederationWatch``
keeps current; gossip rounds and outbox delivery run only on the replica
holding the background lease (both are safe to run twice: receivers drop
repeats by envelope id).

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
from coral.config import Config
from coral.metrics import NodeMetrics
from coral.node.subsystems import Subsystem
from coral.node.subsystems.coordination import on_postgres
from coral.v1 import federation_pb2, federation_pb2_grpc

#: How long a received envelope id is remembered (inbound dedupe). A sender gives
#: up on an envelope after ``RetryPolicy.max_attempts`` tries (a few hours with the
#: default backoff), so a week leaves a wide margin.
INBOX_KEEP_MS = 7 * 24 * 3600 * 1000
#: How often ids past ``INBOX_KEEP_MS`` are deleted (on the lease holder).
INBOX_PRUNE_S = 3600.0

if TYPE_CHECKING:
    from coral.federation.peer_record import PeerAddresses
    from coral.federation.ports import FederationStore
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

    def __init__(self) -> None:
        super().__init__()
        self._pool: Any = None  # the node's asyncpg pool, on PostgreSQL (the node closes it)
        self._postgres: Any = None  # the PostgresFederationStore, on PostgreSQL
        self._watch: Any = None  # the PostgresFederationWatch, on PostgreSQL

    async def _open_store(self, node: Node) -> FederationStore:
        if on_postgres(node.config):
            from coral.store.federation_postgres import PostgresFederationStore

            self._pool = await node.postgres_pool()
            postgres = PostgresFederationStore(self._pool)
            await postgres.migrate()
            self._postgres = postgres
            return postgres
        from coral.store.federation_sqlite import FederationStore as SqliteFederationStore

        sqlite = SqliteFederationStore(node.db)
        await sqlite.migrate()
        return sqlite

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
        from coral.ledger.relay import PaymentRelay
        from coral.node.keys import load_node_handover

        store = await self._open_store(node)
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
            shared_store=self._pool is not None,  # replicas write the PostgreSQL store too
        )
        await self.driver.open()
        if self._pool is not None:
            from coral.store.federation_postgres import PostgresFederationWatch

            self._watch = PostgresFederationWatch(
                None,
                self._postgres,
                listener=node.postgres_listener(),
                on_outbox=self.driver.wake_outbox,
                on_owner=self.driver.learn_owner,
                on_records=self.driver.merge_replicated,
                on_reload=self.driver.reload,
            )
        # Records stored before the driver listened to the directory (open() read the
        # directory too; merging one twice changes nothing).
        early, self._early_records = self._early_records or [], None
        directory.listeners.remove(self._keep_early)
        for record in early:
            self.driver.on_local_record(record)
        # The servers already listen: publish our record now, so the first Hello
        # a peer sends (it may be waiting already) finds it.
        self.driver.publish_self(advertised(node.config, ctx.grpc_address, ctx.http_address))
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
        from coral.protocol.message import now_ms

        interval = node.config.gossip_interval_s
        store = self.driver.store
        self.every(
            INBOX_PRUNE_S, lambda: store.prune_inbox(now_ms() - INBOX_KEEP_MS), lease=node.lease
        )
        if self._watch is None:  # SQLite: this process is the whole node
            self.background(self.driver.run_gossip(interval))
            self.background(self.driver.run_outbox())
            return
        self.background(self._watch.run())
        self.leading(node.lease, lambda: self.driver.run_gossip(interval))
        self.leading(node.lease, self.driver.run_outbox)

    async def close(self, node: Node, ctx: NodeContext) -> None:
        await self.driver.close()
        self._pool = None


def advertised(config: Config, grpc_address: str, http_address: str) -> PeerAddresses:
    """The addresses in this node's peer record: ``public_addresses``, else this process's own.

    The first public address is the record's ``grpc``, the rest its
    ``grpc_replicas``: a node run as replicas (or behind one balancer) is one
    peer to the network, reachable at any of them.
    """
    from coral.federation.peer_record import PeerAddresses

    public = list(dict.fromkeys(config.public_addresses)) or [grpc_address]
    return PeerAddresses(grpc=public[0], grpc_replicas=tuple(public[1:]), http=http_address)
