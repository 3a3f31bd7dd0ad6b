"""The federation subsystem: wires FederationNode into the node's life cycle and APIs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.grpc.federation import installer
from coral.api.http.app import CTX
from coral.node.federation_driver import FederationNode
from coral.node.subsystems import Subsystem
from coral.protocol.message import now_ms


def _driver(request: web.Request) -> FederationNode:
    driver: FederationNode = need(request.app[CTX].federation, "federation")
    return driver


async def list_peers(request: web.Request) -> web.Response:
    """GET /v1/peers: every known node with its signed record and score."""
    driver = _driver(request)
    now = now_ms()
    peers = []
    for did, record in sorted(driver.state.peers.items()):
        if did == driver.did:
            continue
        peers.append(
            {
                "node_id": did,
                "record": record.model_dump(mode="json"),
                "active": did in driver.state.peer_set.active,
                "banned": driver.state.scores.is_banned(did, now),
            }
        )
    return web.json_response({"node_id": driver.did, "peers": peers})


async def remove_peer(request: web.Request) -> web.Response:
    """DELETE /v1/admin/peers/{did}: ban a peer (admin token)."""
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    driver = _driver(request)
    did = request.match_info["did"]
    driver.state.scores.penalize(did, 1e9, now_ms())
    driver.state.peer_set.drop(did)
    return web.json_response({"removed": did})


def install_routes(app: web.Application, ctx: NodeContext) -> None:
    app.router.add_get("/v1/peers", list_peers)
    app.router.add_delete("/v1/admin/peers/{did}", remove_peer)


class FederationSubsystem(Subsystem):
    """Gossip of peers and the directory, cross-node threads, the durable outbox."""

    name = "federation"

    async def setup(self, node: Any, ctx: NodeContext) -> None:
        self.driver = FederationNode(ctx, node.db, node.config.bootstrap_peers)
        await self.driver.open()
        ctx.federation = self.driver
        assert ctx.gateway is not None
        ctx.gateway.forwarder = self.driver
        self.grpc_installers.append(installer(self.driver))
        self.http_installers.append(install_routes)
        if ctx.ledger is not None:  # cross-node payments ride the same outbox
            from coral.node import ledger_relay

            ctx.payment_relay = ledger_relay.PaymentRelay(
                ctx, need(ctx.ledger, "ledger"), need(ctx.ledger_access, "ledger_access")
            )
            self.http_installers.append(ledger_relay.install)

    async def started(self, node: Any, ctx: NodeContext) -> None:
        self.driver.publish_self()
        self.background(self.driver.run_gossip(node.config.gossip_interval_s))
        self.background(self.driver.run_outbox())

    async def close(self, node: Any, ctx: NodeContext) -> None:
        await self.driver.close()
