"""The MCP front door: coral-server 1.x compatible endpoints on the node's aiohttp app.

One low-level ``mcp.server.lowlevel.Server`` serves every MCP agent; which
agent is calling comes from the secret in the URL, resolved per HTTP request
and handed to the tool handlers in the ASGI scope (``coral.agent``). The mcp
package's Streamable HTTP session manager and SSE transport are ASGI apps, so
they run behind the aiohttp<->ASGI bridge. The server speaks both the legacy
``initialize`` handshake (a session per client, POST streams primed for
``Last-Event-ID`` resumption) and the stateless 2026-07-28 revision
(``server/discover``, the protocol version in each request's ``_meta``, no
session id); the session manager routes each POST by its
``MCP-Protocol-Version`` header. Every endpoint checks Host and Origin first
(DNS rebinding, cross-site pages): 403 with a JSON-RPC error otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import mcp_types as types
from aiohttp import web
from mcp.server.lowlevel import Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from coral import __version__
from coral.api.a2a.asgi_bridge import Receive, Scope, Send, asgi_scope, call_asgi
from coral.api.http.host_guard import HostPolicy
from coral.api.mcp.held_agents import HeldAgent, HeldAgents
from coral.api.mcp.replay import STREAM_OWNER, ReplayBuffer
from coral.api.mcp.tools import INSTRUCTION, CoralTools
from coral.coordination.service import MAX_WAIT_MS
from coral.protocol.errors import CoralError

log = logging.getLogger("coral.mcp")

AGENT_SCOPE_KEY = "coral.agent"
STATE_URI = "coral://state"
INSTRUCTION_URI = "coral://instruction"
#: JSON-RPC error codes the MCP spec fixes (mcp_types has no name for the first).
RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = types.INVALID_PARAMS
INVALID_REQUEST = types.INVALID_REQUEST
#: The ``reason`` of the CoralError that CoralTools raises for a name it has no tool for.
UNKNOWN_TOOL = "unknown_tool"
#: Wait-tool arguments that hold the request open, in milliseconds.
WAIT_ARGUMENTS = ("maxWaitMs", "timeoutMs")
#: A hung tool must not hold an MCP request forever: this much past the longest wait.
_TOOL_GRACE_S = 15.0
DEFAULT_SSE_RETRY_MS = 2_000


def _calling_agent(ctx: Any) -> HeldAgent:
    request = getattr(ctx, "request", None)
    agent = request.scope.get(AGENT_SCOPE_KEY) if request is not None else None
    if not isinstance(agent, HeldAgent):
        raise CoralError("no agent bound to this MCP request", reason="unauthenticated")
    return agent


def cap_waits(arguments: dict[str, Any], max_wait_ms: int) -> dict[str, Any]:
    """Shorten wait arguments above the node's cap (values outside the schema stay as sent)."""
    capped = dict(arguments)
    for key in WAIT_ARGUMENTS:
        value = capped.get(key)
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and max_wait_ms < value <= MAX_WAIT_MS
        ):
            capped[key] = max_wait_ms
    return capped


def build_mcp_server(tools: CoralTools, max_wait_ms: int = MAX_WAIT_MS) -> Server[Any]:
    """The low-level MCP server with coral-server's tools and resources.

    Protocol errors follow the spec: an unknown tool is JSON-RPC ``-32602``, an
    unknown resource ``-32002``; a refused tool call is a tool result with
    ``isError``. Waits longer than ``max_wait_ms`` are shortened to it.
    """
    # A blocking session agent may first wait up to a minute for its peers.
    deadline_s = max_wait_ms / 1000 + 60 + _TOOL_GRACE_S

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        # Per agent: coral_close_session and graph custom tools only for those given them.
        request = getattr(ctx, "request", None)
        agent = request.scope.get(AGENT_SCOPE_KEY) if request is not None else None
        specs = tools.tools_for(agent if isinstance(agent, HeldAgent) else None)
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=description, input_schema=schema)
                for name, (description, schema) in specs.items()
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        agent = _calling_agent(ctx)
        arguments = cap_waits(dict(params.arguments or {}), max_wait_ms)
        try:
            result = await asyncio.wait_for(tools.call(agent, params.name, arguments), deadline_s)
        except CoralError as exc:
            if exc.reason == UNKNOWN_TOOL:  # a protocol error, not a tool result
                raise MCPError(
                    INVALID_PARAMS, f"Unknown tool: {params.name}", {"tool": params.name}
                ) from None
            # coral-server's tool error: the message as text and {"error": message}.
            error = {"error": exc.detail, "reason": exc.reason}
            return types.CallToolResult(
                content=[types.TextContent(text=exc.detail)],
                structured_content=error,
                is_error=True,
            )
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result))], structured_content=result
        )

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    name="state",
                    uri=STATE_URI,
                    mime_type="text/markdown",
                    description="Your threads, their messages and your contacts.",
                ),
                types.Resource(
                    name="instruction",
                    uri=INSTRUCTION_URI,
                    mime_type="text/markdown",
                    description="How to use the Coral tools.",
                ),
            ]
        )

    async def read_resource(
        ctx: Any, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        agent = _calling_agent(ctx)
        uri = str(params.uri)
        if uri not in (STATE_URI, INSTRUCTION_URI):
            raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
        text, mime = await tools.read_resource(agent, uri)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=text)]
        )

    return Server(
        "coral-node",
        version=__version__,
        instructions=INSTRUCTION,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


class McpFrontDoor:
    """Streamable HTTP and SSE endpoints per agent secret, plus their lifetime."""

    def __init__(
        self,
        held: HeldAgents,
        tools: CoralTools,
        *,
        policy: HostPolicy | None = None,
        max_wait_ms: int = MAX_WAIT_MS,
        sse_retry_ms: int = DEFAULT_SSE_RETRY_MS,
    ) -> None:
        self.held = held
        self.policy = policy or HostPolicy.of([])
        self.max_wait_ms = max_wait_ms
        self.server = build_mcp_server(tools, max_wait_ms)
        self.replay = ReplayBuffer()
        self.sessions = StreamableHTTPSessionManager(
            app=self.server, event_store=self.replay, retry_interval=sse_retry_ms
        )
        self.sse = SseServerTransport("/messages/")
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        # SSE streams last as long as their clients; stopping ends them at once
        # instead of letting the node's shutdown grace period run out.
        self._sse_streams: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Run the session manager's task group until ``stop``."""
        ready = asyncio.Event()

        async def run() -> None:
            async with self.sessions.run():
                ready.set()
                await self._stop.wait()

        self._runner = asyncio.create_task(run(), name="mcp-sessions")
        await ready.wait()

    async def stop(self) -> None:
        """End every MCP session and SSE stream."""
        self._stop.set()
        for stream in list(self._sse_streams):
            stream.cancel()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner, 5)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """403 with a JSON-RPC error when Host or Origin does not name this node."""
        why = self.policy.refusal(request.headers.get("Host"), request.headers.get("Origin"))
        if why is None:
            return None
        log.info("refused MCP request: %s", why)
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": why}}
        return web.json_response(body, status=403)

    async def _agent(self, request: web.Request) -> HeldAgent:
        return await self.held.by_secret(request.match_info["secret"])

    async def streamable(self, request: web.Request) -> web.StreamResponse:
        """GET/POST/DELETE /mcp/v1/{secret}/mcp: MCP Streamable HTTP (both eras)."""
        if (refused := self._refusal(request)) is not None:
            return refused
        agent = await self._agent(request)
        scope = asgi_scope(request, extra={AGENT_SCOPE_KEY: agent})
        # Session tasks started by this request inherit the owner (see replay.py).
        owner = STREAM_OWNER.set(agent.did)
        try:
            return await call_asgi(self.sessions.handle_request, request, scope)
        finally:
            STREAM_OWNER.reset(owner)

    async def sse_stream(self, request: web.Request) -> web.StreamResponse:
        """GET /mcp/v1/{secret}/sse[/]: the legacy HTTP+SSE transport's event stream."""
        if (refused := self._refusal(request)) is not None:
            return refused
        agent = await self._agent(request)
        root = f"/mcp/v1/{request.match_info['secret']}"
        scope = asgi_scope(
            request, path=request.path[len(root) :], root_path=root, extra={AGENT_SCOPE_KEY: agent}
        )

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            async with self.sse.connect_sse(scope, receive, send) as (reader, writer):
                await self.server.run(reader, writer, self.server.create_initialization_options())

        current = asyncio.current_task()
        assert current is not None
        self._sse_streams.add(current)
        try:
            return await call_asgi(app, request, scope)
        finally:
            self._sse_streams.discard(current)

    async def sse_post(self, request: web.Request) -> web.StreamResponse:
        """POST /mcp/v1/{secret}/messages/?session_id=: client messages for an SSE session."""
        if (refused := self._refusal(request)) is not None:
            return refused
        agent = await self._agent(request)
        scope = asgi_scope(request, extra={AGENT_SCOPE_KEY: agent})
        return await call_asgi(self.sse.handle_post_message, request, scope)

    def install(self, app: web.Application) -> None:
        """Add the MCP routes to the node's aiohttp app."""
        base = "/mcp/v1/{secret}"
        for method in ("GET", "POST", "DELETE"):
            app.router.add_route(method, base + "/mcp", self.streamable)
        app.router.add_get(base + "/sse", self.sse_stream)
        app.router.add_get(base + "/sse/", self.sse_stream)
        app.router.add_post(base + "/messages/", self.sse_post)
        app.router.add_post(base + "/messages", self.sse_post)
