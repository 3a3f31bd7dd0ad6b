"""Serve an ASGI application (Starlette routes of a2a-sdk and mcp) from an aiohttp handler.

The node has ONE aiohttp app. The protocol SDKs ship Starlette/ASGI pieces, so
instead of a second HTTP server on a second port we translate each request
into an ASGI scope and stream the ASGI response straight back through
aiohttp, which keeps Server-Sent Events incremental.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

log = logging.getLogger("coral.asgi")

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[AsgiMessage]]
Send = Callable[[AsgiMessage], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: How often a request waiting for more ASGI input checks that its client is still there.
_DISCONNECT_POLL_S = 0.5


def asgi_scope(
    request: web.Request,
    *,
    path: str | None = None,
    root_path: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ASGI HTTP scope for ``request``; ``path`` overrides what the app sees."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    peer = request.transport.get_extra_info("peername") if request.transport else None
    app_path = request.path if path is None else path
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": root_path + app_path,
        "raw_path": (root_path + app_path).encode(),
        "root_path": root_path,
        "query_string": request.query_string.encode(),
        "headers": [(k.lower(), v) for k, v in request.raw_headers],
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(sockname[:2]) if sockname else None,
        "state": {},
        **(extra or {}),
    }


async def call_asgi(app: AsgiApp, request: web.Request, scope: Scope) -> web.StreamResponse:
    """Run ``app`` for one aiohttp request and return the (possibly streamed) response.

    The body is read first (aiohttp enforces the node's size limit); after it,
    ``receive`` reports ``http.disconnect`` once the client goes away, so
    streaming apps stop cleanly.
    """
    body = await request.read()
    body_sent = False
    response: web.StreamResponse | None = None
    finished = asyncio.Event()

    async def receive() -> AsgiMessage:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        while not finished.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), _DISCONNECT_POLL_S)
        return {"type": "http.disconnect"}

    async def send(message: AsgiMessage) -> None:
        nonlocal response
        if message["type"] == "http.response.start":
            response = web.StreamResponse(status=int(message["status"]))
            for name, value in message.get("headers", []):
                key = name.decode("latin-1")
                if key.lower() in ("content-length", "transfer-encoding", "connection"):
                    continue  # aiohttp frames the body itself
                response.headers.add(key, value.decode("latin-1"))
            await response.prepare(request)
        elif message["type"] == "http.response.body":
            if response is None:
                raise RuntimeError("ASGI app sent a body before starting the response")
            chunk = message.get("body", b"")
            if chunk:
                await response.write(chunk)
            if not message.get("more_body", False):
                finished.set()

    try:
        await app(scope, receive, send)
    except (ConnectionResetError, asyncio.CancelledError):
        finished.set()
        raise
    finally:
        finished.set()
    if response is None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        # The route pattern, not the path: paths may carry secrets (MCP agent URLs).
        log.error("ASGI app returned without a response for %s %s", request.method, route)
        raise web.HTTPInternalServerError()
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response
