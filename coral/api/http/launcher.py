"""HTTP admin routes of the agent launcher (``Authorization: Bearer <admin token>``).

- ``POST /v1/admin/launch`` ``{manifest, replicas?, options?, name?}``: start a
  registry agent's replicas; answers the launch (201).
- ``GET /v1/admin/launched``: every launch and its replicas.
- ``DELETE /v1/admin/launched/{launch_id}``: stop its replicas and forget it.
"""

from __future__ import annotations

from aiohttp import web

from coral.api.auth import authenticate_admin
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, read_json_body
from coral.sessions.launcher import AgentLauncher, InvalidLaunch


def _launcher(request: web.Request) -> AgentLauncher:
    ctx = request.app[CTX]
    authenticate_admin(ctx, request.headers.get("Authorization"))
    launcher: AgentLauncher = need(ctx.launcher, "launcher")
    return launcher


async def launch(request: web.Request) -> web.Response:
    """POST /v1/admin/launch {manifest, replicas?, options?, name?}."""
    launcher = _launcher(request)
    body = await read_json_body(request, allow_empty=True)
    if not isinstance(body.get("manifest"), str):
        raise InvalidLaunch("give 'manifest': a registry name or manifest path")
    replicas = body.get("replicas", 1)
    options = body.get("options") or {}
    name = body.get("name")
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise InvalidLaunch("'replicas' must be an integer")
    if not isinstance(options, dict) or not (name is None or isinstance(name, str)):
        raise InvalidLaunch("'options' must be an object and 'name' a string")
    spec = launcher.plan(body["manifest"], replicas, options, name)
    launched = await launcher.launch(spec)
    return web.json_response(launched.view(), status=201)


async def list_launched(request: web.Request) -> web.Response:
    """GET /v1/admin/launched."""
    launcher = _launcher(request)
    return web.json_response({"launched": [item.view() for item in launcher.table.all()]})


async def stop_launched(request: web.Request) -> web.Response:
    """DELETE /v1/admin/launched/{launch_id}: stop its replicas and forget it."""
    launcher = _launcher(request)
    launched = await launcher.stop(request.match_info["launch_id"])
    return web.json_response(launched.view())


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the launcher's admin routes."""
    app.router.add_post("/v1/admin/launch", launch)
    app.router.add_get("/v1/admin/launched", list_launched)
    app.router.add_delete("/v1/admin/launched/{launch_id}", stop_launched)
