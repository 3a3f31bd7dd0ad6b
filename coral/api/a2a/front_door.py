"""The A2A front door: cards, JSON-RPC, HTTP+JSON and gRPC for every Coral agent.

The a2a-sdk's ``DefaultRequestHandler`` (streaming, version and error
handling) drives ``CoralAgentExecutor`` over the node's durable, scoped task
store (``coral.api.a2a.tasks``). Its JSON-RPC and REST routes are Starlette
apps served through the aiohttp<->ASGI bridge on the node's one HTTP port; its
``GrpcHandler`` joins the node's gRPC server. Paths (``base`` =
``/a2a/{name}``, the router's base is ``/a2a``):

- ``GET {base}/.well-known/agent-card.json``: the agent's signed card;
  ``/.well-known/agent-card.json`` is the router's, or the default agent's
  when ``[a2a] default_agent`` is set (a one-agent node)
- ``POST {base}``: JSON-RPC (also ``POST {base}/jsonrpc``); 0.3 method names
  are accepted here too
- ``{base}/message:send``, ``{base}/tasks/...`` ...: HTTP+JSON
- ``GET /.well-known/jwks.json``: the card-signing key
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from a2a.auth.user import UnauthenticatedUser
from a2a.server.agent_execution import RequestContext, RequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.grpc_handler import DefaultGrpcServerCallContextBuilder
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import TaskStore
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.utils.constants import PROTOCOL_VERSION_1_0, VERSION_HEADER
from a2a.utils.errors import InvalidRequestError, VersionNotSupportedError
from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request

from coral.agents.directory import AgentDirectory, AgentNotRegistered
from coral.api.a2a.asgi_bridge import AsgiApp, asgi_scope, call_asgi
from coral.api.a2a.callers import (
    AuthenticatingGrpcHandler,
    BadCredentials,
    Callers,
    CallerUnauthenticated,
)
from coral.api.a2a.cards import JWKS_PATH, agent_card, card_json, jwks, router_card, sign_card
from coral.api.a2a.executor import CoralAgentExecutor
from coral.api.a2a.handler import CoralRequestHandler
from coral.api.a2a.push import RetryingPushSender, WebhookPolicy
from coral.api.a2a.tasks import (
    AGENT_STATE_KEY,
    DEFAULT_AGENT_STATE_KEY,
    FRESH_CONTEXT_STATE_KEY,
    A2ATaskRecords,
    ScopedPushConfigs,
    ScopedTaskStore,
    TaskWatch,
    agent_of,
)
from coral.api.a2a.wire import (
    STATE_ERROR,
    STREAMING_METHODS,
    errors_as_events,
    invalid_list_filter,
    known_state,
    with_version,
)
from coral.api.context import NodeContext, need
from coral.api.http.app import interruptible, read_json_body
from coral.api.mcp.held_agents import GATEWAY_KIND
from coral.config import A2AConfig
from coral.protocol.errors import CoralError, NotFound

A2A_SERVICE = "lf.a2a.v1.A2AService"
#: First path segments under /a2a/ that are the router's HTTP+JSON routes, not agents.
_ROUTER_SEGMENTS = ("tasks", "extendedAgentCard")


class UnknownA2AAgent(NotFound):
    """No registered agent has the name in the A2A URL."""

    reason = "agent_not_registered"


class AgentFromUrl(DefaultServerCallContextBuilder):
    """Call context with the agent named by the URL, the default agent and the caller."""

    def __init__(self, default_agent: str, callers: Callers) -> None:
        super().__init__()
        self.default_agent = default_agent
        self.callers = callers

    def build(self, request: Request) -> ServerCallContext:
        """The default context plus ``coral.agent_name`` and the authenticated caller."""
        context = super().build(request)
        context.state[AGENT_STATE_KEY] = request.scope.get(AGENT_STATE_KEY, "")
        context.state[DEFAULT_AGENT_STATE_KEY] = self.default_agent
        try:  # checked before dispatch (401); this only names the caller
            context.user = self.callers.identify(request.headers.get("authorization"))
        except BadCredentials:
            context.user = UnauthenticatedUser()
        return context


class VersionCheckedGrpcContext(DefaultGrpcServerCallContextBuilder):
    """Applies the A2A-Version rule to gRPC as the SDK's HTTP routes do.

    The SDK's GrpcHandler does not check ``a2a-version`` metadata. This
    service (``lf.a2a.v1``) is the 1.0 one (0.3 clients call ``a2a.v1``, not
    served), so a missing value means 1.0; any other major version is refused
    with VersionNotSupported.
    """

    def __init__(self, default_agent: str, callers: Callers) -> None:
        super().__init__()
        self.default_agent = default_agent
        self.callers = callers

    def build(self, context: grpc.aio.ServicerContext[Any, Any]) -> ServerCallContext:
        """The default context, once the caller's protocol version is accepted."""
        metadata = context.invocation_metadata() or ()
        sent = [
            value if isinstance(value, str) else value.decode()
            for key, value in metadata
            if key.lower() == VERSION_HEADER.lower()
        ]
        version = sent[0] if sent else PROTOCOL_VERSION_1_0
        if version.split(".")[0] != "1":
            raise VersionNotSupportedError(
                message=f"A2A version '{version}' is not supported here; expected '1.0'"
            )
        built = super().build(context)
        built.state[DEFAULT_AGENT_STATE_KEY] = self.default_agent
        authorization = [
            value if isinstance(value, str) else value.decode()
            for key, value in metadata
            if key.lower() == "authorization"
        ]
        try:
            built.user = self.callers.identify(authorization[0] if authorization else None)
        except BadCredentials:
            raise CallerUnauthenticated(message="unknown credentials") from None
        if self.callers.required and not built.user.is_authenticated:
            raise CallerUnauthenticated(message="authentication required: authorization metadata")
        return built


class TaskContextBuilder(RequestContextBuilder):
    """Builds the executor's request context; a follow-up naming only its task keeps its context.

    A message with ``taskId`` and no ``contextId`` continues the task's own
    context (and so its Coral thread) instead of starting a new one. A
    context id made up here is marked in the call state, so the executor
    knows it has no thread yet without asking the store.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store

    async def build(
        self,
        context: ServerCallContext,
        params: a2a_pb2.SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: a2a_pb2.Task | None = None,
    ) -> RequestContext:
        """The request context, with the stored task's context id filled in."""
        if task_id and not context_id:
            stored = task or await self.store.get(task_id, context)
            if stored is not None:
                context_id = stored.context_id
        if not context_id and params is not None:
            context_id = str(uuid.uuid4())
            context.state[FRESH_CONTEXT_STATE_KEY] = context_id
        return RequestContext(
            call_context=context, request=params, task_id=task_id, context_id=context_id, task=task
        )


class A2AFrontDoor:
    """Everything A2A inbound: one request handler shared by all three bindings."""

    def __init__(
        self,
        ctx: NodeContext,
        executor: CoralAgentExecutor,
        records: A2ATaskRecords,
        config: A2AConfig,
        *,
        watch: TaskWatch | None = None,
    ) -> None:
        """``watch``: with replicas, how SubscribeToTask follows tasks other replicas run."""
        self.ctx = ctx
        self.executor = executor
        self.config = config
        self.store = ScopedTaskStore(records)
        push_configs = ScopedPushConfigs(records)
        self.webhooks = WebhookPolicy(config.push_allow)
        self.push_sender = RetryingPushSender(
            push_configs, self.webhooks, attempts=config.push_attempts
        )
        self.extended = bool(config.extended_card_description)
        self.callers = Callers(config.callers)
        self.handler = CoralRequestHandler(
            agent_executor=executor,
            task_store=self.store,
            # Only consulted for capabilities; the served cards are built per request.
            agent_card=router_card([], "http://127.0.0.1", "127.0.0.1:0", extended=self.extended),
            push_config_store=push_configs,
            push_sender=self.push_sender,
            push_url_validator=self.webhooks.allows,
            request_context_builder=TaskContextBuilder(self.store),
            extended_agent_card=(
                router_card([], "http://127.0.0.1", "127.0.0.1:0", extended=True)
                if self.extended
                else None
            ),
            extended_card_modifier=self._extended_card if self.extended else None,
            watch=watch,
        )
        builder = AgentFromUrl(config.default_agent, self.callers)
        self.jsonrpc_app = Starlette(
            routes=create_jsonrpc_routes(
                self.handler, rpc_url="/jsonrpc", context_builder=builder, enable_v0_3_compat=True
            )
        )
        self.jsonrpc_events_app = errors_as_events(self.jsonrpc_app)
        self.rest_app = Starlette(routes=create_rest_routes(self.handler, context_builder=builder))

    @property
    def directory(self) -> AgentDirectory:
        """The node's agent directory."""
        directory: AgentDirectory = need(self.ctx.directory, "directory")
        return directory

    async def _listed(self) -> list[Any]:
        records = await self.directory.search(local_only=True)
        return [r for r in records if GATEWAY_KIND not in r.manifest.capabilities]

    async def _record(self, name: str) -> Any:
        # Through the name's binding, so a second key registering the name
        # cannot take over this URL.
        try:
            record = await self.executor.names.resolve(name)
        except AgentNotRegistered:
            record = None
        if record is None or GATEWAY_KIND in record.manifest.capabilities:
            raise UnknownA2AAgent(f"no agent named {name!r}")
        return record

    async def _card(self, name: str | None, *, extended: bool = False) -> a2a_pb2.AgentCard:
        http, grpc_address = self.ctx.http_address, self.ctx.grpc_address
        tls = self.ctx.config.tls_enabled
        if name:
            card = agent_card(
                await self._record(name), http, grpc_address, tls=tls, extended=self.extended
            )
        else:
            card = router_card(
                await self._listed(), http, grpc_address, tls=tls, extended=self.extended
            )
        if extended:
            card.description += "\n\n" + self.config.extended_card_description
        self.callers.declare(card)
        return sign_card(card, self.ctx.identity, http)

    async def _extended_card(
        self, card: a2a_pb2.AgentCard, context: ServerCallContext
    ) -> a2a_pb2.AgentCard:
        if not context.user.is_authenticated:
            raise InvalidRequestError(
                message="the extended card needs an authenticated caller (Authorization: Bearer)"
            )
        return await self._card(agent_of(context) or None, extended=True)

    async def node_card(self, request: web.Request) -> web.Response:
        """GET /.well-known/agent-card.json: the default agent's card, else the router's."""
        return web.json_response(card_json(await self._card(self.config.default_agent or None)))

    async def node_jwks(self, request: web.Request) -> web.Response:
        """GET /.well-known/jwks.json: the key that signs every card of this node."""
        return web.json_response(jwks(self.ctx.identity))

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        try:
            caller = self.callers.identify(request.headers.get("Authorization"))
        except BadCredentials:
            reason = "unknown credentials"
        else:
            if caller.is_authenticated or not self.callers.required:
                return None
            reason = "authentication required: Authorization: Bearer <token>"
        return web.json_response(
            {"error": reason}, status=401, headers={"WWW-Authenticate": 'Bearer realm="a2a"'}
        )

    async def _jsonrpc(self, request: web.Request, name: str) -> web.StreamResponse:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        interruptible(request)  # may await the agent's reply: no drain at shutdown
        try:
            call = await read_json_body(request)
        except CoralError:
            call = {}  # not a JSON-RPC object: the library's dispatcher answers it
        refused = invalid_list_filter(call)
        if refused is not None:
            return web.json_response(refused)
        scope = asgi_scope(request, path="/jsonrpc", extra={AGENT_STATE_KEY: name})
        app: AsgiApp = self.jsonrpc_app
        if call.get("method") in STREAMING_METHODS:
            app = self.jsonrpc_events_app
        return await call_asgi(app, request, with_version(request, scope, call.get("method")))

    async def _rest(self, request: web.Request, name: str, tail: str) -> web.StreamResponse:
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        interruptible(request)
        status = request.query.get("status")
        if tail == "tasks" and status is not None and not known_state(status):
            return web.json_response(
                {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": STATE_ERROR}},
                status=400,
            )
        scope = asgi_scope(request, path="/" + tail, extra={AGENT_STATE_KEY: name})
        return await call_asgi(self.rest_app, request, with_version(request, scope))

    async def router_root(self, request: web.Request) -> web.StreamResponse:
        """POST /a2a (and /a2a/jsonrpc): the router's JSON-RPC endpoint."""
        return await self._jsonrpc(request, "")

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Everything under /a2a/: an agent's card, JSON-RPC and HTTP+JSON, or the router's."""
        head, _, tail = request.match_info["tail"].partition("/")
        if head == ".well-known" and tail == "agent-card.json" and request.method == "GET":
            return web.json_response(card_json(await self._card(None)))
        if ":" in head or head in _ROUTER_SEGMENTS:
            return await self._rest(request, "", request.match_info["tail"])
        await self._record(head)
        if tail == ".well-known/agent-card.json" and request.method == "GET":
            return web.json_response(card_json(await self._card(head)))
        if tail in ("", "jsonrpc") and request.method == "POST":
            return await self._jsonrpc(request, head)
        return await self._rest(request, head, tail)

    async def default_rest(self, request: web.Request) -> web.StreamResponse:
        """HTTP+JSON operations at the host root: the default agent's (a one-agent node)."""
        return await self._rest(request, "", request.path.lstrip("/"))

    def install_http(self, app: web.Application, ctx: NodeContext) -> None:
        """Add the A2A routes to the node's aiohttp app.

        With ``[a2a] default_agent`` set, the HTTP+JSON operations are also
        served at the host root for that agent, for clients that resolve
        operation paths against the host rather than the interface URL.
        """
        app.router.add_get("/.well-known/agent-card.json", self.node_card)
        app.router.add_get(JWKS_PATH, self.node_jwks)
        app.router.add_post("/a2a", self.router_root)
        app.router.add_post("/a2a/jsonrpc", self.router_root)
        app.router.add_route("*", "/a2a/{tail:.+}", self.dispatch)
        if self.config.default_agent:
            app.router.add_post("/message:send", self.default_rest)
            app.router.add_post("/message:stream", self.default_rest)
            app.router.add_get("/extendedAgentCard", self.default_rest)
            app.router.add_get("/tasks", self.default_rest)
            app.router.add_route("*", "/tasks/{tail:.+}", self.default_rest)

    def install_grpc(self, server: grpc.aio.Server, ctx: NodeContext) -> list[str]:
        """Add ``lf.a2a.v1.A2AService`` to the node's gRPC server."""
        a2a_pb2_grpc.add_A2AServiceServicer_to_server(  # type: ignore[no-untyped-call]
            AuthenticatingGrpcHandler(
                self.handler, VersionCheckedGrpcContext(self.config.default_agent, self.callers)
            ),
            server,
        )
        return [A2A_SERVICE]

    async def close(self) -> None:
        """Stop push delivery and drain running tasks."""
        await self.push_sender.close()
        await self.handler.aclose()
