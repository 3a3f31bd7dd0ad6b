"""Caller authentication shared by the HTTP and gRPC adapters."""

from __future__ import annotations

import hmac

from coral.api.context import NodeContext
from coral.protocol.errors import Unauthenticated
from coral.protocol.message import now_ms
from coral.protocol.request_auth import verify_request


def authenticate_agent(
    ctx: NodeContext, header: str | None, method: str, target: str, body: bytes
) -> str:
    """The did of the agent that signed this request; Unauthenticated otherwise."""
    return verify_request(
        header, method, target, body, now_ms(), ctx.verifier.limits.max_future_skew_ms
    )


def authenticate_admin(ctx: NodeContext, header: str | None) -> None:
    """Accept ``Bearer <admin token>``; Unauthenticated otherwise (constant-time compare)."""
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("admin token required", reason="admin_required")
    if not hmac.compare_digest(header[7:].strip().encode(), ctx.admin_token.encode()):
        raise Unauthenticated("wrong admin token", reason="bad_admin_token")
