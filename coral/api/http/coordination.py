"""HTTP routes of the coordination engine: submit, threads, history, waiting.

Writes are signed messages (``POST /v1/messages``). Reads need a signed
``Authorization: Coral ...`` value (or ``?auth=`` for browsers' EventSource).
Waiting comes as long-poll (``GET /v1/inbox``) and as Server-Sent Events
(``GET /v1/inbox/events``); both resume from a cursor.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from coral.api.auth import authenticate_agent
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, cancel_on_disconnect, interruptible, read_message
from coral.api.http.sse import EventStream
from coral.api.views import entry_view, history_view, inbox_view, thread_view, wait_view
from coral.coordination.gateway import MessageGateway
from coral.coordination.model import Thread
from coral.coordination.service import CoordinationService
from coral.protocol.errors import InvalidMessage


def signed_target(request: web.Request) -> str:
    """The path and query an agent signed (the ``auth`` parameter itself excluded)."""
    query = [(k, v) for k, v in request.query.items() if k != "auth"]
    return request.path + ("?" + urlencode(query) if query else "")


async def caller(request: web.Request) -> str:
    """Authenticate the agent making this read request."""
    header = request.headers.get("Authorization") or request.query.get("auth")
    body = await request.read()
    return authenticate_agent(
        request.app[CTX], header, request.method, signed_target(request), body
    )


def _engine(request: web.Request) -> CoordinationService:
    engine: CoordinationService = need(request.app[CTX].coordination, "coordination")
    return engine


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidMessage(
            f"query parameter {name} must be an integer", reason="invalid_query"
        ) from None


async def submit(request: web.Request) -> web.Response:
    """POST /v1/messages: a signed message (JSON or protobuf body)."""
    gateway: MessageGateway = need(request.app[CTX].gateway, "gateway")
    message = await read_message(request)
    result = await gateway.submit(message)
    if isinstance(result, Thread):
        return web.json_response({"thread": thread_view(result)}, status=201)
    if isinstance(result, dict):  # queued for the node that owns the thread
        return web.json_response({"forwarded": result}, status=202)
    return web.json_response({"entry": entry_view(result)}, status=201)


async def list_threads(request: web.Request) -> web.Response:
    agent = await caller(request)
    threads = await _engine(request).list_threads(agent, request.query.get("session_id"))
    return web.json_response({"threads": [thread_view(t) for t in threads]})


async def get_thread(request: web.Request) -> web.Response:
    agent = await caller(request)
    thread = await _engine(request).get_thread(agent, request.match_info["thread_id"])
    return web.json_response(thread_view(thread))


async def history(request: web.Request) -> web.Response:
    agent = await caller(request)
    page = await _engine(request).history(
        agent,
        request.match_info["thread_id"],
        _int(request, "after", 0),
        _int(request, "limit", 100),
    )
    return web.json_response(history_view(page))


def _wait_args(request: web.Request) -> dict[str, Any]:
    return {
        "kind": request.query.get("kind", "message"),
        "from_agent": request.query.get("from") or None,
        "after": _int(request, "after", 0),
        "limit": _int(request, "limit", 100),
    }


@cancel_on_disconnect
async def wait(request: web.Request) -> web.Response:
    """GET /v1/inbox?kind=mention|message|agent&from=&after=&timeout_ms=: long-poll."""
    agent = await caller(request)
    interruptible(request)
    ctx = request.app[CTX]
    ctx.metrics.waits_open.inc()
    try:
        result = await _engine(request).wait(
            agent, timeout_ms=_int(request, "timeout_ms", 30_000), **_wait_args(request)
        )
    finally:
        ctx.metrics.waits_open.dec()
    return web.json_response(wait_view(result))


@cancel_on_disconnect
async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/inbox/events: Server-Sent Events of inbox entries past ``after``.

    Each event's ``id`` is its cursor, so a browser's automatic reconnect
    (Last-Event-ID) resumes exactly where it stopped.
    """
    agent = await caller(request)
    args = _wait_args(request)
    last_event = request.headers.get("Last-Event-ID")
    if last_event and last_event.isdigit():
        args["after"] = int(last_event)
    engine = _engine(request)
    engine.check_wait(args["kind"], args["from_agent"], args["after"], args["limit"], 15_000)
    ctx = request.app[CTX]
    # Admission before the response starts, so a refusal is a real 429/503.
    with engine.wait_slot(agent) as slot:
        interruptible(request)
        async with EventStream(request) as stream:
            ctx.metrics.waits_open.inc()
            try:
                while True:
                    result = await engine.wait(agent, timeout_ms=15_000, slot=slot, **args)
                    if result.timed_out:
                        await stream.keep_alive()
                        continue
                    for item in result.entries:
                        data = json.dumps(inbox_view(item), separators=(",", ":"))
                        await stream.send(data, event="entry", id=item.cursor)
                    args["after"] = result.cursor
            finally:
                ctx.metrics.waits_open.dec()
    return stream.response


async def strategies(request: web.Request) -> web.Response:
    return web.json_response({"strategies": _engine(request).strategies.names()})


def install(app: web.Application, ctx: NodeContext) -> None:
    app.router.add_post("/v1/messages", submit)
    app.router.add_get("/v1/threads", list_threads)
    app.router.add_get("/v1/threads/{thread_id}", get_thread)
    app.router.add_get("/v1/threads/{thread_id}/messages", history)
    app.router.add_get("/v1/inbox", wait)
    app.router.add_get("/v1/inbox/events", events)
    app.router.add_get("/v1/strategies", strategies)


__all__ = ["entry_view", "inbox_view", "install"]
