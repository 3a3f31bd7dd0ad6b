"""``/api/v1/puppet/{namespace}/{sessionId}/{agentName}``: an app acts as a session agent.

The same operations as the agent's own tools, through the same code path: the
message is signed with the agent's node-held key and passes the gateway, so a
puppet's posts are indistinguishable from the agent's own (as in coral-server).
Bodies and results follow coral-server: ``CreateThreadInput`` ->
``{"thread"}``, ``SendMessageInput`` -> ``{"status", "message"}``, the others
answer 200 with no body.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from coral.api.coralserver.common import coral_server_errors, json_body
from coral.api.coralserver.routes import authorize
from coral.api.mcp.held_agents import HeldAgent
from coral.api.mcp.tools import CoralTools
from coral.protocol.errors import NotFound

TOOLS: web.AppKey[CoralTools] = web.AppKey("coral_server_tools", CoralTools)


def _puppet(request: web.Request) -> tuple[CoralTools, HeldAgent]:
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    member = session.agent(request.match_info["agentName"])
    tools = request.app[TOOLS]
    held = tools.held.get(member.did)
    if held is None:
        raise NotFound(f"agent {member.name!r} has no key on this node", reason="agent_not_found")
    return tools, held


async def _run(request: web.Request, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    tools, agent = _puppet(request)
    return await tools.call(agent, tool, args)


@coral_server_errors
async def create_thread(request: web.Request) -> web.Response:
    """POST .../thread: CreateThreadInput -> CreateThreadOutput."""
    return web.json_response(await _run(request, "coral_create_thread", await json_body(request)))


@coral_server_errors
async def close_thread(request: web.Request) -> web.Response:
    """DELETE .../thread: CloseThreadInput."""
    await _run(request, "coral_close_thread", await json_body(request))
    return web.Response(status=200)


@coral_server_errors
async def send_message(request: web.Request) -> web.Response:
    """POST .../thread/message: SendMessageInput -> SendMessageOutput."""
    return web.json_response(await _run(request, "coral_send_message", await json_body(request)))


@coral_server_errors
async def add_participant(request: web.Request) -> web.Response:
    """POST .../thread/participant: AddParticipantInput."""
    await _run(request, "coral_add_participant", await json_body(request))
    return web.Response(status=200)


@coral_server_errors
async def remove_participant(request: web.Request) -> web.Response:
    """DELETE .../thread/participant: RemoveParticipantInput."""
    await _run(request, "coral_remove_participant", await json_body(request))
    return web.Response(status=200)


@coral_server_errors
async def kill_agent(request: web.Request) -> web.Response:
    """DELETE /api/v1/puppet/{namespace}/{sessionId}/{agentName}: stop that agent."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    await manager.stop_agent(session, request.match_info["agentName"])
    return web.Response(status=200)


def install_puppet(app: web.Application, tools: CoralTools) -> None:
    """Add the puppet routes."""
    app[TOOLS] = tools
    base = "/api/v1/puppet/{namespace}/{sessionId}/{agentName}/thread"
    app.router.add_post(base, create_thread)
    app.router.add_delete(base, close_thread)
    app.router.add_post(base + "/message", send_message)
    app.router.add_post(base + "/participant", add_participant)
    app.router.add_delete(base + "/participant", remove_participant)
    app.router.add_delete("/api/v1/puppet/{namespace}/{sessionId}/{agentName}", kill_agent)
