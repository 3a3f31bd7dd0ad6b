"""HTTP routes of the agent directory."""

from __future__ import annotations

from aiohttp import web

from coral.agents.directory import AgentDirectory
from coral.agents.keyrotation import RotationRequest, parse_handover
from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, read_json_body
from coral.protocol.agent import parse_record


def _directory(request: web.Request) -> AgentDirectory:
    directory: AgentDirectory = need(request.app[CTX].directory, "directory")
    return directory


async def register_agent(request: web.Request) -> web.Response:
    """POST /v1/agents: a record signed by the agent; answers it countersigned."""
    record = parse_record(await read_json_body(request))
    signed = await _directory(request).register(record)
    return web.json_response(signed.model_dump(mode="json"), status=201)


async def rotate_agent(request: web.Request) -> web.Response:
    """POST /v1/agents/rotate {handover, tombstone, replacement}: move an agent to a new key."""
    body = await read_json_body(request)
    rotation = RotationRequest(
        handover=parse_handover(body.get("handover")),
        tombstone=parse_record(body.get("tombstone")),
        replacement=parse_record(body.get("replacement")),
    )
    tombstone, replacement = await _directory(request).rotate(rotation)
    answer = {
        "tombstone": tombstone.model_dump(mode="json"),
        "record": replacement.model_dump(mode="json"),
    }
    return web.json_response(answer, status=201)


async def get_agent(request: web.Request) -> web.Response:
    """GET /v1/agents/{ref}: by did or name."""
    record = await _directory(request).resolve(request.match_info["ref"])
    return web.json_response(record.model_dump(mode="json"))


async def list_agents(request: web.Request) -> web.Response:
    """GET /v1/agents?name=&capability=&all=true: the directory, filtered."""
    q = request.query
    records = await _directory(request).search(
        name=q.get("name") or None,
        capability=q.get("capability") or None,
        local_only=q.get("all", "false").lower() != "true",
        include_deleted=q.get("include_deleted", "false").lower() == "true",
    )
    return web.json_response({"agents": [r.model_dump(mode="json") for r in records]})


def install(app: web.Application, ctx: NodeContext) -> None:
    app.router.add_post("/v1/agents", register_agent)
    app.router.add_post("/v1/agents/rotate", rotate_agent)
    app.router.add_get("/v1/agents", list_agents)
    app.router.add_get("/v1/agents/{ref}", get_agent)
