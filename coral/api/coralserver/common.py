"""Shared pieces of the coral-server API: bearer keys, JSON bodies, error bodies."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from coral.api.errors import http_status
from coral.api.http.app import read_json_body
from coral.protocol.errors import CoralError, MalformedJson, Unauthenticated

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def check_bearer(header: str | None, keys: Sequence[str]) -> None:
    """Accept ``Bearer <key>`` for one of ``keys`` (constant-time); Unauthenticated otherwise."""
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("a Bearer token from [auth] keys is required", reason="no_token")
    check_token(header[7:].strip(), keys)


def check_token(token: str, keys: Sequence[str]) -> None:
    """Accept a token equal to one of ``keys``; Unauthenticated otherwise."""
    given = token.encode()
    if not any(hmac.compare_digest(given, key.encode()) for key in keys):
        raise Unauthenticated("invalid token", reason="bad_token")


def error_body(error: CoralError) -> web.Response:
    """coral-server's RouteException body (``message``) plus our problem fields."""
    status = http_status(error)
    body = {"message": error.detail, "reason": error.reason, "status": status}
    return web.json_response(body, status=status)


def coral_server_errors(handler: Handler) -> Handler:
    """Answer typed errors with coral-server's error body instead of problem+json."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CoralError as exc:
            return error_body(exc)

    return wrapped


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object, through the node's one parser (``read_json_body``).

    Only the wording of unparsable JSON is coral-server's.

    Raises:
        InvalidMessage: the body is empty (unless ``allow_empty``: ``{}``), not
            JSON (``malformed_json``), over a limit, or not an object.
    """
    try:
        return await read_json_body(request, allow_empty=allow_empty)
    except MalformedJson as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc.detail}") from None
