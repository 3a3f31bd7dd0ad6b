"""``X-Request-Id`` on every HTTP response, and on every log line a request causes.

A caller's id (a proxy's, a client's) is kept when it is sane; otherwise the
node makes one. The middleware runs outermost, so even the errors mapped by
the inner error middleware are logged with the id, and the header is set when
a response is prepared, which also covers streamed (SSE) responses.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time

from aiohttp import web

from coral.api.context import NodeContext
from coral.api.http.app import Handler

#: The id of the request the current task is serving, or None outside a request.
#: The logging filter (``coral.node.logs``) copies it onto every record.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "coral_request_id", default=None
)

HEADER = "X-Request-Id"
REQUEST_ID_KEY: web.RequestKey[str] = web.RequestKey("coral_request_id", str)
#: Ids a caller may choose: short, printable, no spaces (they end up in log lines).
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

log = logging.getLogger("coral.http.requests")


def new_request_id() -> str:
    """A fresh random id (16 hex digits)."""
    return secrets.token_hex(8)


def request_id_for(request: web.Request) -> str:
    """The caller's id when acceptable, else a new one."""
    offered = request.headers.get(HEADER, "")
    return offered if _ACCEPTABLE.match(offered) else new_request_id()


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id to this task's logs and log the request's outcome at debug."""
    request_id = request_id_for(request)
    request[REQUEST_ID_KEY] = request_id
    token = current_request_id.set(request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
        # The route pattern, not the path: paths may carry secrets (MCP agent URLs).
        resource = request.match_info.route.resource
        log.debug(
            "%s %s -> %s in %.1f ms",
            request.method,
            resource.canonical if resource is not None else "unmatched",
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response
    finally:
        current_request_id.reset(token)


async def _echo_header(request: web.Request, response: web.StreamResponse) -> None:
    request_id = request.get(REQUEST_ID_KEY)
    if isinstance(request_id, str):
        response.headers[HEADER] = request_id


def install(app: web.Application, ctx: NodeContext) -> None:
    """Put the middleware first (outermost) and echo the id on every prepared response."""
    app.middlewares.insert(0, request_id_middleware)
    app.on_response_prepare.append(_echo_header)
