"""What the A2A front door checks in the raw request before the a2a-sdk sees it.

The SDK's JSON parser drops unknown enum names silently and assumes 0.3 when
no version is sent; these helpers keep those cases explicit, and turn a
streaming call's early error into a Server-Sent Event.
"""

from __future__ import annotations

from typing import Any

from a2a.types import a2a_pb2
from a2a.utils.constants import PROTOCOL_VERSION_1_0, VERSION_HEADER
from aiohttp import web

from coral.api.a2a.asgi_bridge import AsgiApp, AsgiMessage, Receive, Scope, Send
from coral.api.http import sse


def with_version(
    request: web.Request, scope: dict[str, Any], method: object = None
) -> dict[str, Any]:
    """The ASGI scope with the request's A2A version as a header.

    The version may come as the ``A2A-Version`` header or query parameter.
    With neither, the spec assumes 0.3; every 0.3 operation has its own name
    (``message/send`` on JSON-RPC, ``/v1/...`` paths, the ``a2a.v1`` gRPC
    service), so a request using a 1.0 operation name is served as 1.0 and a
    0.3 method name still reaches the 0.3 compatibility layer.
    """
    if VERSION_HEADER in request.headers:
        return scope
    version = request.query.get(VERSION_HEADER)
    if version is None and isinstance(method, str) and "/" in method:
        return scope  # a 0.3 method name (``message/send``): left to the 0.3 layer
    version = version or PROTOCOL_VERSION_1_0
    scope["headers"] = [*scope["headers"], (b"a2a-version", version.encode())]
    return scope


STATE_ERROR = "status is not a TaskState (TASK_STATE_SUBMITTED, TASK_STATE_WORKING, ...)"


def known_state(value: object) -> bool:
    """True for a TaskState name or number (the JSON parser drops unknown names silently)."""
    if isinstance(value, str):
        return value in a2a_pb2.TaskState.keys() or (
            value.isdigit() and int(value) in a2a_pb2.TaskState.values()
        )
    return isinstance(value, int) and value in a2a_pb2.TaskState.values()


#: JSON-RPC methods answered with Server-Sent Events, errors included.
STREAMING_METHODS = frozenset({"SendStreamingMessage", "SubscribeToTask"})


def errors_as_events(app: AsgiApp) -> AsgiApp:
    """Wrap an ASGI app so that a plain JSON answer becomes one Server-Sent Event.

    A streaming JSON-RPC call that fails before its stream starts gets its
    error as the stream's only event, so clients reading SSE see it too.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        convert = False
        body: list[bytes] = []

        async def send_event(message: AsgiMessage) -> None:
            nonlocal convert
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"application/json"):
                    convert = True
                    message = {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", sse.CONTENT_TYPE.encode()),
                            (b"cache-control", b"no-store"),
                        ],
                    }
            elif message["type"] == "http.response.body" and convert:
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                event = sse.encode_event(b"".join(body).decode(errors="replace"))
                message = {"type": "http.response.body", "body": event}
            await send(message)

        await app(scope, receive, send_event)

    return wrapped


def invalid_list_filter(call: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON-RPC error for a ListTasks call with an unknown status filter, else None."""
    if call.get("method") != "ListTasks":
        return None
    params = call.get("params")
    if not isinstance(params, dict) or "status" not in params or known_state(params["status"]):
        return None
    return {
        "jsonrpc": "2.0",
        "id": call.get("id"),
        "error": {"code": -32602, "message": STATE_ERROR},
    }
