"""Operator routes that create node-held agents (admin bearer token required).

- ``POST /v1/admin/mcp-agents`` ``{name, description?, capabilities?}`` -> the MCP
  agent's did, its secret (shown once) and its connection URLs.
- ``POST /v1/admin/a2a-agents`` ``{card_url, name?}`` -> a proxy agent for an
  external A2A agent, which threads can then include by name.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from coral.api.a2a.outbound import A2AProxies
from coral.api.auth import authenticate_admin
from coral.api.http.app import CTX, read_json_body
from coral.api.mcp.held_agents import MCP_KIND, HeldAgents
from coral.protocol.agent import AgentManifest
from coral.protocol.errors import InvalidMessage

HELD: web.AppKey[HeldAgents] = web.AppKey("coral_held_agents", HeldAgents)
PROXIES: web.AppKey[A2AProxies] = web.AppKey("coral_a2a_proxies", A2AProxies)


def connection_urls(http_address: str, secret: str) -> dict[str, str]:
    """Where an MCP client connects as the agent holding ``secret``."""
    base = f"{http_address}/mcp/v1/{secret}"
    return {"streamable_http": f"{base}/mcp", "sse": f"{base}/sse"}


def _manifest(body: dict[str, Any]) -> AgentManifest:
    try:
        return AgentManifest.model_validate(
            {
                "name": body.get("name"),
                "description": body.get("description", ""),
                "capabilities": body.get("capabilities", []),
                "endpoints": ["mcp"],
            }
        )
    except (ValueError, TypeError) as exc:
        raise InvalidMessage(
            f"invalid agent: {exc}".splitlines()[0], reason="invalid_agent"
        ) from None


async def create_mcp_agent(request: web.Request) -> web.Response:
    """POST /v1/admin/mcp-agents."""
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    manifest = _manifest(await read_json_body(request, allow_empty=True))
    agent, secret = await request.app[HELD].create(manifest, MCP_KIND, with_secret=True)
    assert secret is not None
    body = {
        "name": agent.name,
        "did": agent.did,
        "secret": secret,
        "urls": connection_urls(ctx.http_address, secret),
    }
    return web.json_response(body, status=201)


async def create_a2a_proxy(request: web.Request) -> web.Response:
    """POST /v1/admin/a2a-agents."""
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    body = await read_json_body(request, allow_empty=True)
    card_url = body.get("card_url")
    name = body.get("name")
    if not isinstance(card_url, str) or not card_url.startswith(("http://", "https://")):
        raise InvalidMessage("card_url is an http(s) URL", reason="invalid_card_url")
    if name is not None and not isinstance(name, str):
        raise InvalidMessage("name is a string", reason="invalid_agent")
    agent = await request.app[PROXIES].add(card_url, name)
    return web.json_response(
        {"name": agent.name, "did": agent.did, "card_url": card_url}, status=201
    )


def installer(held: HeldAgents, proxies: A2AProxies) -> Any:
    """A route installer for the admin routes, bound to the node's held agents."""

    def install(app: web.Application, ctx: object) -> None:
        app[HELD] = held
        app[PROXIES] = proxies
        app.router.add_post("/v1/admin/mcp-agents", create_mcp_agent)
        app.router.add_post("/v1/admin/a2a-agents", create_a2a_proxy)

    return install
