"""Dashboard HTTP routes: the page, its snapshot and event stream, and operator actions.

- ``GET /`` the page; ``GET /dashboard/static/{file}`` its CSS and JS.
- ``GET /v1/dashboard/snapshot`` one JSON snapshot.
- ``GET /v1/dashboard/events`` Server-Sent Events: a ``snapshot`` event now and
  whenever the snapshot changes (at most twice a second).
- ``POST /v1/dashboard/admin/threads/{id}/close`` an operator action (admin token).
  The page's other actions use the owning subsystems' admin routes directly:
  ``POST /v1/admin/ledger/issue``, ``POST /v1/admin/mcp-agents``,
  ``DELETE /v1/admin/peers/{did}``.

Every route checks Host and Origin first (``coral.api.http.host_guard``): a
request under another name (DNS rebinding) or from another site gets 403.
Read-only views are open while the node listens on loopback only (anyone who
can reach the port is on the machine); on any other address they need the
admin token too, as ``Authorization: Bearer`` or ``?token=`` (EventSource
cannot send headers).
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.dashboard.feed import SnapshotFeed
from coral.api.dashboard.snapshot import SnapshotBuilder, views_are_open
from coral.api.http.app import CTX, read_json_body
from coral.api.http.host_guard import HostPolicy, guarded
from coral.api.http.sse import EventStream
from coral.protocol.errors import Forbidden, InvalidMessage, NotFound, ResourceExhausted

STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
}
#: No inline script or style and nothing from elsewhere: the page is self-contained.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
MAX_SUMMARY_CHARS = 4000
#: Open event streams the node serves at once; more get 429 (each holds a socket).
MAX_EVENT_STREAMS = 32
OPERATOR_NOTE = "[closed by the node operator]"

BUILDER: web.AppKey[SnapshotBuilder] = web.AppKey("coral_dashboard_builder", SnapshotBuilder)
FEED: web.AppKey[SnapshotFeed] = web.AppKey("coral_dashboard_feed", SnapshotFeed)

log = logging.getLogger("coral.dashboard")


def _authorize_view(request: web.Request) -> None:
    ctx = request.app[CTX]
    if views_are_open(ctx):
        return
    header = request.headers.get("Authorization")
    if header is None and "token" in request.query:
        header = f"Bearer {request.query['token']}"
    authenticate_admin(ctx, header)


async def index(request: web.Request) -> web.Response:
    """GET /: the dashboard page (always served; data calls do the authorizing)."""
    return web.Response(
        body=(STATIC_DIR / "index.html").read_bytes(),
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


async def static_file(request: web.Request) -> web.Response:
    """GET /dashboard/static/{name}: one of the page's own assets."""
    name = request.match_info["name"]
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise NotFound(f"no dashboard asset {name!r}", reason="not_found")
    return web.Response(
        body=(STATIC_DIR / name).read_bytes(),
        content_type=content_type,
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def snapshot(request: web.Request) -> web.Response:
    """GET /v1/dashboard/snapshot."""
    _authorize_view(request)
    return web.json_response(await request.app[BUILDER].build())


async def events(request: web.Request) -> web.StreamResponse:
    """GET /v1/dashboard/events: the snapshot as SSE, re-sent on every change."""
    _authorize_view(request)
    if request.app[FEED].subscribers >= MAX_EVENT_STREAMS:
        raise ResourceExhausted("too many open dashboard streams", reason="too_many_streams")
    updates = request.app[FEED].updates()
    try:
        async with EventStream(request) as stream:
            async for text in updates:
                if text is None:
                    await stream.keep_alive()
                else:
                    await stream.send(text, event="snapshot")
    finally:
        await updates.aclose()
    return stream.response


async def close_thread(request: web.Request) -> web.Response:
    """POST /v1/dashboard/admin/threads/{thread_id}/close ``{summary}``.

    The close is recorded in the log as made by the node itself (the
    operator's authority), and the summary says so. Team threads are refused:
    their members' certificates decide who closes them.
    """
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    engine = need(ctx.coordination, "coordination")
    body = await read_json_body(request, allow_empty=True)
    summary = str(body.get("summary") or "").strip()
    if len(summary) > MAX_SUMMARY_CHARS:
        raise InvalidMessage("the summary is too long", reason="invalid_summary")
    thread_id = request.match_info["thread_id"]
    await ctx.wired()  # the team check below and federation's replication need them
    thread = await engine.store.get_thread(thread_id)
    if thread is None:
        raise NotFound(f"no thread {thread_id}", reason="thread_not_found")
    teams = ctx.teams
    if teams is not None and await teams.index.team_of_thread(thread_id) is not None:
        raise Forbidden("team threads are closed by their members", reason="team_thread")
    note = f"{OPERATOR_NOTE} {summary}".strip()
    closed = await engine.force_close(thread_id, note)
    log.info("operator closed thread %s", thread_id)
    return web.json_response(
        {
            "thread_id": closed.id,
            "state": closed.state,
            "summary": closed.summary,
            "closed_by": ctx.identity.did,
        }
    )


def install(
    app: web.Application, ctx: NodeContext, builder: SnapshotBuilder, feed: SnapshotFeed
) -> None:
    """Add the dashboard routes to the node's app, each behind the Host/Origin check."""
    app[BUILDER] = builder
    app[FEED] = feed
    policy = HostPolicy.from_config(ctx.config)
    app.router.add_get("/", guarded(policy, index))
    app.router.add_get("/dashboard/static/{name}", guarded(policy, static_file))
    app.router.add_get("/v1/dashboard/snapshot", guarded(policy, snapshot))
    app.router.add_get("/v1/dashboard/events", guarded(policy, events))
    app.router.add_post(
        "/v1/dashboard/admin/threads/{thread_id}/close", guarded(policy, close_thread)
    )
