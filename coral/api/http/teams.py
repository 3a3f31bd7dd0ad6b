"""HTTP routes of team formation.

Writes are signed team documents (the signature is in the document, so any
relay may post them); reads are signed requests from a party of the team.

- ``POST /v1/teams``: a signed charter; proposes the team.
- ``POST /v1/teams/{team_id}/documents``: one signed document (invitation,
  acceptance, refusal, certificate, removal, dissolution, key epoch).
- ``GET /v1/teams/{team_id}``: ``{"record", "thread_ids", "revision"}``; the
  record verifies offline with ``coral.teams.verify_team``. With
  ``?after_revision=R&wait_ms=M`` it is a long-poll: the answer comes once the
  revision (documents applied plus threads bound) passes R, or after M ms.
- ``GET /v1/teams/{team_id}/candidates``: directory matches per role.
- ``GET /v1/teams?member=did``: summaries of the caller's teams.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from coral.api.context import NodeContext, need
from coral.api.http.app import CTX, cancel_on_disconnect, interruptible, read_json_body
from coral.api.http.coordination import caller
from coral.coordination.service import MAX_WAIT_MS
from coral.protocol.errors import Forbidden, InvalidMessage
from coral.teams import TeamState, parse_charter, parse_team_document
from coral.teams.service import TeamsService


def _service(request: web.Request) -> TeamsService:
    service: TeamsService = need(request.app[CTX].teams, "teams")
    return service


def state_view(state: TeamState, now: int, thread_ids: list[str]) -> dict[str, Any]:
    """A summary of a team's current state (the record is the proof, this is the digest)."""
    return {
        "team_id": state.team_id,
        "initiator": state.initiator,
        "goal": state.charter.goal,
        "open": state.is_open(now),
        "members": {did: m.role for did, m in sorted(state.current_members(now).items())},
        "key_epoch": state.key_epoch,
        "rekey_required": state.rekey_required,
        "documents": state.applied_count,
        "thread_ids": thread_ids,
    }


async def propose(request: web.Request) -> web.Response:
    """POST /v1/teams: a charter signed by its initiator."""
    charter = parse_charter(await read_json_body(request))
    state = await _service(request).propose(charter)
    body = {"team_id": state.team_id, "charter_hash": state.charter_hash}
    return web.json_response(body, status=201)


async def submit_document(request: web.Request) -> web.Response:
    """POST /v1/teams/{team_id}/documents: one signed team document."""
    service = _service(request)
    team_id = request.match_info["team_id"]
    document = parse_team_document(await read_json_body(request))
    state = await service.submit(team_id, document)
    now = service.now()
    view = state_view(state, now, await service.index.threads_of_team(team_id))
    return web.json_response({"document_hash": document.content_hash(), "team": view}, status=201)


def _query_int(request: web.Request, name: str, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InvalidMessage(f"{name} is an integer in [{low}, {high}]", reason="invalid_query")
    return value


@cancel_on_disconnect
async def get_team(request: web.Request) -> web.Response:
    """GET /v1/teams/{team_id}[?after_revision=&wait_ms=]: the whole signed record.

    For parties of the team. With ``wait_ms`` the call waits (at most the
    node's long-poll bound) until the team's revision passes ``after_revision``.
    """
    reader = await caller(request)
    service = _service(request)
    team_id = request.match_info["team_id"]
    wait_ms = _query_int(request, "wait_ms", 0, MAX_WAIT_MS)
    after = _query_int(request, "after_revision", 0, 2**53)
    if wait_ms:
        interruptible(request)
        metrics = request.app[CTX].metrics
        metrics.waits_open.inc()
        try:
            view = await service.wait_view(
                team_id, reader, after_revision=after or 0, timeout_ms=wait_ms
            )
        finally:
            metrics.waits_open.dec()
    else:
        view = await service.view(team_id, reader)
    body = {
        "record": json.loads(view.record.to_json()),
        "thread_ids": view.thread_ids,
        "revision": view.revision,
    }
    return web.json_response(body)


async def candidates(request: web.Request) -> web.Response:
    """GET /v1/teams/{team_id}/candidates: who could fill each role, for team recruiters."""
    reader = await caller(request)
    matches = await _service(request).candidates(request.match_info["team_id"], reader)
    roles = {
        role: [record.model_dump(mode="json") for record in records]
        for role, records in matches.items()
    }
    return web.json_response({"roles": roles})


async def list_teams(request: web.Request) -> web.Response:
    """GET /v1/teams?member=did: the teams the caller takes part in."""
    reader = await caller(request)
    member = request.query.get("member") or reader
    if member != reader:
        raise Forbidden("an agent may list only its own teams", reason="not_your_teams")
    service = _service(request)
    now = service.now()
    teams = []
    for team_id in await service.index.teams_of(member):
        state = await service.state(team_id)
        teams.append(state_view(state, now, await service.index.threads_of_team(team_id)))
    return web.json_response({"teams": teams})


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the team routes."""
    app.router.add_post("/v1/teams", propose)
    app.router.add_get("/v1/teams", list_teams)
    app.router.add_get("/v1/teams/{team_id}", get_team)
    app.router.add_post("/v1/teams/{team_id}/documents", submit_document)
    app.router.add_get("/v1/teams/{team_id}/candidates", candidates)
