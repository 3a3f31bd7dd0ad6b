"""The A2A front door: cards, JSON-RPC, HTTP+JSON and gRPC for every Coral agent.

The a2a-sdk's ``DefaultRequestHandler`` (task store, streaming, version and
error handling) drives ``CoralAgentExecutor``. Its JSON-RPC and REST routes
are Starlette apps served through the aiohttp<->ASGI bridge on the node's one
HTTP port; its ``GrpcHandler`` (and the 0.3 compat handler) join the node's
gRPC server. Paths:

- ``GET /.well-known/agent-card.json``: the node's router card
- ``GET /a2a/{name}/.well-known/agent-card.json``: agent ``name``'s card
- ``POST /a2a/{name}/jsonrpc`` and ``POST /a2a/jsonrpc`` (router): JSON-RPC
- ``/a2a/{name}/message:send`` ... and ``/a2a/message:send`` (router): HTTP+JSON
"""

from __future__ import annotations

from typing import Any

import grpc
from a2a.compat.v0_3 import a2a_v0_3_pb2_grpc
from a2a.compat.v0_3.grpc_handler import CompatGrpcHandler
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler, GrpcHandler
from a2a.server.request_handlers.grpc_handler import DefaultGrpcServerCallContextBuilder
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import a2a_pb2_grpc
from a2a.utils.constants import PROTOCOL_VERSION_0_3, VERSION_HEADER
from a2a.utils.errors import VersionNotSupportedError
from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request

from coral.agents.directory import AgentDirectory, AgentNotRegistered
from coral.api.a2a.asgi_bridge import asgi_scope, call_asgi
from coral.api.a2a.cards import agent_card, card_json, router_card
from coral.api.a2a.executor import AGENT_STATE_KEY, CoralAgentExecutor
from coral.api.http.app import interruptible
from coral.api.mcp.held_agents import GATEWAY_KIND
from coral.context import NodeContext
from coral.protocol.errors import NotFound

A2A_SERVICE = "lf.a2a.v1.A2AService"
A2A_V03_SERVICE = "a2a.v1.A2AService"


class UnknownA2AAgent(NotFound):
    """No registered agent has the name in the A2A URL."""

    reason = "agent_not_registered"


class AgentFromUrl(DefaultServerCallContextBuilder):
    """Call context that also records the agent named by the URL (for 0.3 clients)."""

    def build(self, request: Request) -> ServerCallContext:
        """The default context plus ``coral.agent_name`` from the ASGI scope."""
        context = super().build(request)
        context.state[AGENT_STATE_KEY] = request.scope.get(AGENT_STATE_KEY, "")
        return context


class VersionCheckedGrpcContext(DefaultGrpcServerCallContextBuilder):
    """Applies the A2A-Version rule to gRPC as the SDK's HTTP routes do.

    The SDK's GrpcHandler does not check ``a2a-version`` metadata; a missing
    value means 0.3 (served by the ``a2a.v1`` compat service), and any major
    version but 1 is refused with VersionNotSupported.
    """

    def build(self, context: grpc.aio.ServicerContext[Any, Any]) -> ServerCallContext:
        """The default context, once the caller's protocol version is accepted."""
        metadata = context.invocation_metadata() or ()
        sent = [
            value if isinstance(value, str) else value.decode()
            for key, value in metadata
            if key.lower() == VERSION_HEADER.lower()
        ]
        version = sent[0] if sent else PROTOCOL_VERSION_0_3
        if version.split(".")[0] != "1":
            raise VersionNotSupportedError(
                message=f"A2A version '{version}' is not supported here; expected '1.0'"
            )
        return super().build(context)


class A2AFrontDoor:
    """Everything A2A inbound: one request handler shared by all three bindings."""

    def __init__(self, ctx: NodeContext, executor: CoralAgentExecutor) -> None:
        self.ctx = ctx
        self.executor = executor
        self.handler = DefaultRequestHandler(
            agent_executor=executor,
            task_store=InMemoryTaskStore(),
            # Only consulted for capabilities; the served cards are built per request.
            agent_card=router_card([], "http://127.0.0.1", "127.0.0.1:0"),
        )
        builder = AgentFromUrl()
        self.jsonrpc_app = Starlette(
            routes=create_jsonrpc_routes(
                self.handler, rpc_url="/jsonrpc", context_builder=builder, enable_v0_3_compat=True
            )
        )
        self.rest_app = Starlette(
            routes=create_rest_routes(
                self.handler, context_builder=builder, enable_v0_3_compat=True
            )
        )

    @property
    def directory(self) -> AgentDirectory:
        """The node's agent directory."""
        directory: AgentDirectory = self.ctx.require("directory")
        return directory

    async def _listed(self) -> list[Any]:
        records = await self.directory.search(local_only=True)
        return [r for r in records if GATEWAY_KIND not in r.manifest.capabilities]

    async def _record(self, name: str) -> Any:
        # Through the name's binding, so a second key registering the name
        # cannot take over this URL.
        try:
            record = await self.directory.resolve(name)
        except AgentNotRegistered:
            record = None
        if record is None or GATEWAY_KIND in record.manifest.capabilities:
            raise UnknownA2AAgent(f"no agent named {name!r}")
        return record

    async def node_card(self, request: web.Request) -> web.Response:
        """GET /.well-known/agent-card.json: the router card."""
        card = router_card(await self._listed(), self.ctx.http_address, self.ctx.grpc_address)
        return web.json_response(card_json(card))

    async def agent_card(self, request: web.Request) -> web.Response:
        """GET /a2a/{name}/.well-known/agent-card.json."""
        record = await self._record(request.match_info["name"])
        card = agent_card(record, self.ctx.http_address, self.ctx.grpc_address)
        return web.json_response(card_json(card))

    async def jsonrpc(self, request: web.Request) -> web.StreamResponse:
        """POST /a2a/{name}/jsonrpc or /a2a/jsonrpc."""
        name = request.match_info.get("name", "")
        if name:
            await self._record(name)
        interruptible(request)  # may await the agent's reply: no drain at shutdown
        scope = asgi_scope(request, path="/jsonrpc", extra={AGENT_STATE_KEY: name})
        return await call_asgi(self.jsonrpc_app, request, scope)

    async def rest(self, request: web.Request) -> web.StreamResponse:
        """Any /a2a/... HTTP+JSON path (tenant = agent name as the first segment)."""
        interruptible(request)
        scope = asgi_scope(request, path=request.path[len("/a2a") :])
        return await call_asgi(self.rest_app, request, scope)

    def install_http(self, app: web.Application, ctx: NodeContext) -> None:
        """Add the A2A routes to the node's aiohttp app."""
        app.router.add_get("/.well-known/agent-card.json", self.node_card)
        app.router.add_get("/a2a/{name}/.well-known/agent-card.json", self.agent_card)
        app.router.add_post("/a2a/jsonrpc", self.jsonrpc)
        app.router.add_post("/a2a/{name}/jsonrpc", self.jsonrpc)
        app.router.add_route("*", "/a2a/{tail:.+}", self.rest)

    def install_grpc(self, server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
        """Add ``lf.a2a.v1.A2AService`` (and the 0.3 ``a2a.v1`` one) to the node's gRPC server."""
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(  # type: ignore[no-untyped-call]
            GrpcHandler(self.handler, VersionCheckedGrpcContext()), server
        )
        compat = CompatGrpcHandler(self.handler)
        a2a_v0_3_pb2_grpc.add_A2AServiceServicer_to_server(compat, server)  # type: ignore[no-untyped-call]
        return [A2A_SERVICE, A2A_V03_SERVICE]
