"""aiohttp application factory: middleware, node routes, metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coral.api.context import NodeContext
from coral.api.errors import as_coral_error, http_status, problem
from coral.protocol.canonical import parse_json
from coral.protocol.codec import message_from_json, message_from_protobuf_bytes
from coral.protocol.errors import CoralError, InvalidMessage, TooLarge
from coral.protocol.message import Message

log = logging.getLogger("coral.http")

CTX: web.AppKey[NodeContext] = web.AppKey("coral_ctx", NodeContext)
#: Handler tasks that may be cancelled as soon as the node stops (see ``interruptible``).
INTERRUPTIBLE = web.AppKey("coral_interruptible", set[asyncio.Task[Any]])
PROBLEM_JSON = "application/problem+json"
PROTOBUF_TYPES = {"application/x-protobuf", "application/protobuf", "application/octet-stream"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: CoralError) -> web.Response:
    """A problem+json response for a typed error (with Retry-After when it is known)."""
    response = web.json_response(
        problem(error), status=http_status(error), content_type=PROBLEM_JSON
    )
    if error.retry_after_s is not None:
        response.headers["Retry-After"] = str(error.retry_after_s)
        if error.category == "unavailable":
            # Shed the connection too: under fd pressure an idle keep-alive
            # socket is exactly what the node is short of.
            response.force_close()
    return response


#: The status recorded for a request whose client left first (nginx's convention);
#: never sent, only counted.
CLIENT_CLOSED = 499


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map typed errors to problem+json once, count requests and rejections.

    Unexpected exceptions become a bare 500 problem with no stack trace.
    """
    ctx = request.app[CTX]
    started = time.perf_counter()
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    try:
        response = await _run_handler(request, handler)
    except asyncio.CancelledError:
        # aiohttp cancels the handler when its client disconnects (and at
        # shutdown); the cancellation keeps propagating.
        if _client_gone(request):
            _count_disconnect(request, name)
        raise
    except CoralError as exc:
        ctx.metrics.rejections.labels("http", exc.reason).inc()
        response = error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        ctx.metrics.rejections.labels("http", "too_large").inc()
        response = error_response(TooLarge("request body exceeds the size limit"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        body = {
            "type": "about:blank",
            "title": exc.reason,
            "status": exc.status,
            "reason": exc.reason.lower().replace(" ", "_"),
            "detail": exc.text or exc.reason,
        }
        response = web.json_response(body, status=exc.status, content_type=PROBLEM_JSON)
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and _client_gone(request):
            # The client left mid-body or mid-response: normal, not a fault.
            _count_disconnect(request, name)
            return web.Response(status=CLIENT_CLOSED)
        storage = as_coral_error(exc)
        if storage is not None:  # the database cannot serve: 503 with a reason
            log.warning("%s %s: %s", request.method, name, storage.detail)
            ctx.metrics.rejections.labels("http", storage.reason).inc()
            response = error_response(storage)
            _observe(ctx, request, name, response, started)
            return response
        log.exception("unhandled error in %s %s", request.method, name)
        body = {
            "type": "about:blank",
            "title": "internal error",
            "status": 500,
            "reason": "internal",
            "detail": "internal error",
        }
        response = web.json_response(body, status=500, content_type=PROBLEM_JSON)
    _observe(ctx, request, name, response, started)
    return response


def _observe(
    ctx: NodeContext, request: web.Request, route: str, response: web.StreamResponse, started: float
) -> None:
    ctx.metrics.requests.labels("http", f"{request.method} {route}", str(response.status)).inc()
    ctx.metrics.request_seconds.labels("http").observe(time.perf_counter() - started)


def cancel_on_disconnect(handler: Handler) -> Handler:
    """Mark a route handler that is cancelled when its client disconnects.

    For waits and streams: the cancellation frees the wait slot at once.
    Every other handler runs shielded, finishing its work even if the client
    left (library transports, MCP sessions among them, treat a cancelled
    request as a torn-down session).
    """
    handler._coral_cancel_on_disconnect = True  # type: ignore[attr-defined]
    return handler


async def _run_handler(request: web.Request, handler: Handler) -> web.StreamResponse:
    # aiohttp runs with handler_cancellation: a disconnect cancels this task.
    if getattr(request.match_info.handler, "_coral_cancel_on_disconnect", False):
        return await handler(request)
    inner = asyncio.ensure_future(handler(request))
    # If the client leaves, the shielded handler finishes alone: retrieve its
    # outcome so a late failure is not reported as "never retrieved".
    inner.add_done_callback(lambda task: task.cancelled() or task.exception())
    return await asyncio.shield(inner)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _count_disconnect(request: web.Request, route: str) -> None:
    """Log at debug and count apart a request whose client went away."""
    ctx = request.app[CTX]
    # The route pattern, not the path: paths may carry secrets (MCP agent URLs).
    log.debug("client left during %s %s", request.method, route)
    ctx.metrics.client_disconnects.labels("http").inc()
    ctx.metrics.requests.labels("http", f"{request.method} {route}", str(CLIENT_CLOSED)).inc()


async def read_message(request: web.Request, *, field: str | None = None) -> Message:
    """Decode a message body sent as JSON or protobuf (by Content-Type)."""
    limits = request.app[CTX].verifier.limits
    raw = await request.read()
    if request.content_type in PROTOBUF_TYPES:
        return message_from_protobuf_bytes(raw, limits)
    return message_from_json(raw, limits)


async def read_json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, through the node's one bounded parser.

    Every route that takes a JSON body calls this (or ``read_message``): size
    is bounded by the app's ``client_max_size``, nesting, number length and
    UTF-8 by ``coral.protocol.canonical.parse_json`` with the node's limits.
    An empty body reads as ``{}`` when ``allow_empty``.

    Raises:
        InvalidMessage: a typed 4xx (``malformed_json``, ``too_deep``,
            ``number_too_long``, ``invalid_utf8``, ``empty_body``,
            ``invalid_body`` for JSON that is not an object).
    """
    limits = request.app[CTX].verifier.limits
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidMessage("the request needs a JSON object body", reason="empty_body")
    body = parse_json(raw, max_depth=limits.max_depth, max_number_chars=limits.max_number_chars)
    if not isinstance(body, dict):
        raise InvalidMessage("the body must be a JSON object", reason="invalid_body")
    return body


def interruptible(request: web.Request) -> None:
    """Mark the running handler as one the node cancels at once when it stops.

    For waits and streams (long-poll, SSE, an A2A call awaiting its agent):
    their clients resume from a cursor, so draining them for the whole
    shutdown grace only delays the exit. Other requests keep the grace.
    """
    task = asyncio.current_task()
    if task is not None:
        tasks = request.config_dict[INTERRUPTIBLE]
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _cancel_interruptible(app: web.Application) -> None:
    tasks: set[asyncio.Task[Any]] = app[INTERRUPTIBLE]
    for task in tuple(tasks):
        task.cancel()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def node_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[CTX].node_info())


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[CTX].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def verify_message(request: web.Request) -> web.Response:
    """Check a message (JSON or protobuf body): well formed, signed, fresh, new.

    "New" means the node has not accepted the id; checking never records it,
    so verifying a message does not stop its sender from submitting it.
    ``?check_replay=false`` skips the seen-id check. Refusals are
    problem+json with the precise ``reason``.
    """
    ctx = request.app[CTX]
    message = await read_message(request)
    check_replay = request.query.get("check_replay", "true").lower() != "false"
    ctx.verifier.verify(message, check_replay=check_replay, remember=False)
    return web.json_response({"valid": True, "message_id": message.id, "sender": message.sender})


def json_body_limit(ctx: NodeContext) -> int:
    # Leave room for an envelope around a maximal message.
    return ctx.verifier.limits.max_message_bytes * 2 + 4096


#: Per-connection limits for the HTTP server. aiohttp's idle keep-alive default
#: (about an hour) lets idle sockets pile up; a minute and a quarter matches
#: common proxies. Request-line and header sizes are stated rather than left to
#: defaults so an oversized request is refused before any handler runs.
HTTP_CONNECTION_LIMITS: dict[str, Any] = {
    "keepalive_timeout": 75.0,
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
}

RouteInstaller = Callable[[web.Application, NodeContext], None]


def build_http_app(
    ctx: NodeContext, installers: list[RouteInstaller] | None = None
) -> web.Application:
    """Build the node's aiohttp app; subsystems add routes through ``installers``."""
    app = web.Application(
        middlewares=[errors_and_metrics],
        client_max_size=json_body_limit(ctx),
        handler_args=HTTP_CONNECTION_LIMITS,
    )
    app[CTX] = ctx
    app[INTERRUPTIBLE] = set()
    app.on_shutdown.append(_cancel_interruptible)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/node", node_info)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/messages/verify", verify_message)
    for install in installers or []:
        install(app, ctx)
    return app


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
