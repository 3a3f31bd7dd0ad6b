"""HTTP routes of federation: the peer list, and banning a peer (admin)."""

from __future__ import annotations

from aiohttp import web

from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX
from coral.federation.driver import FederationNode
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


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the federation routes to the node's HTTP app."""
    app.router.add_get("/v1/peers", list_peers)
    app.router.add_delete("/v1/admin/peers/{did}", remove_peer)
