"""Shared pieces of the coral-server API: bearer keys, JSON bodies, error bodies."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from coral.api.errors import http_status
from coral.api.http.app import CTX
from coral.protocol.canonical import parse_json
from coral.protocol.errors import CoralError, InvalidMessage, MalformedJson, Unauthenticated

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


async def json_body(request: web.Request, *, empty: Any = None) -> Any:
    """The request body as JSON (``empty`` when there is none); InvalidMessage otherwise."""
    raw = await request.read()
    if not raw.strip():
        if empty is not None:
            return empty
        raise InvalidMessage("a JSON body is required", reason="malformed_json")
    # The node's one bounded parser: depth, number length and UTF-8 refused as 4xx.
    limits = request.app[CTX].verifier.limits
    try:
        return parse_json(raw, max_depth=limits.max_depth, max_number_chars=limits.max_number_chars)
    except MalformedJson as exc:
        raise MalformedJson(f"the body is not valid JSON: {exc.detail}") from None
