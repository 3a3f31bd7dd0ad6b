"""``/ws/v1/events/...``: live session events and server-wide (session manager) events.

Paths as coral-server has them: the token in the path
(``/ws/v1/events/{token}/session/{namespace}/{sessionId}``,
``/ws/v1/events/{token}/lsm``) or, without it, an ``Authorization: Bearer``
header. Each event is one JSON text frame with a ``type`` and an ISO
``timestamp``. ``lsm`` takes coral-server's ``namespaceFilter`` and
``namespaceAnnotationFilters`` (base64url JSON object) query parameters.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from coral.api.coralserver.common import check_bearer, check_token, coral_server_errors
from coral.api.coralserver.routes import AUTH_KEYS, SESSIONS
from coral.protocol.errors import InvalidMessage
from coral.sessions.events import EventBus

HEARTBEAT_S = 20.0


def _authorize(request: web.Request) -> None:
    keys = request.app[AUTH_KEYS]()
    token = request.match_info.get("token")
    if token is not None:
        check_token(token, keys)
    else:
        check_bearer(request.headers.get("Authorization"), keys)


async def _stream(request: web.Request, bus: EventBus, keep: Any = None) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
    await ws.prepare(request)
    with bus.subscribe() as queue:

        async def drain_client() -> None:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break

        reader = request.loop.create_task(drain_client())
        try:
            while not ws.closed:
                getter = request.loop.create_task(queue.get())
                done, _ = await _first(getter, reader)
                if getter not in done:
                    getter.cancel()
                    break
                event = getter.result()
                if event is None:
                    break
                if keep is None or keep(event):
                    await ws.send_str(json.dumps(event))
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()
    return ws


async def _first(*tasks: Any) -> tuple[set[Any], set[Any]]:
    return await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)


@coral_server_errors
async def session_events(request: web.Request) -> web.StreamResponse:
    """Events of one session until it ends or the client leaves."""
    _authorize(request)
    manager = request.app[SESSIONS]
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    return await _stream(request, session.events)


def _annotation_filter(raw: str | None) -> dict[str, str] | None:
    if raw is None:
        return None
    try:
        padded = raw + "=" * (-len(raw) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        raise InvalidMessage("namespaceAnnotationFilters is base64url JSON") from None
    if not isinstance(decoded, dict):
        raise InvalidMessage("namespaceAnnotationFilters is a JSON object")
    return {str(k): str(v) for k, v in decoded.items()}


def _namespace_of(event: dict[str, Any]) -> dict[str, Any]:
    for key in ("namespaceState", "initialState", "finalState"):
        if isinstance(event.get(key), dict):
            return dict(event[key])
    return {}


@coral_server_errors
async def server_events(request: web.Request) -> web.StreamResponse:
    """Session-manager events (sessions and namespaces created, running, closed)."""
    _authorize(request)
    manager = request.app[SESSIONS]
    only = request.query.get("namespaceFilter")
    annotations = _annotation_filter(request.query.get("namespaceAnnotationFilters"))

    def keep(event: dict[str, Any]) -> bool:
        namespace = _namespace_of(event)
        if only is not None and namespace.get("name") != only:
            return False
        if annotations:
            have = namespace.get("annotations", {})
            return all(have.get(k) == v for k, v in annotations.items())
        return True

    return await _stream(request, manager.events, keep)


def install_events(app: web.Application) -> None:
    """Add the event websockets."""
    app.router.add_get("/ws/v1/events/{token}/session/{namespace}/{sessionId}", session_events)
    app.router.add_get("/ws/v1/events/session/{namespace}/{sessionId}", session_events)
    app.router.add_get("/ws/v1/events/{token}/lsm", server_events)
    app.router.add_get("/ws/v1/events/lsm", server_events)
