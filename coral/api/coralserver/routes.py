"""``/api/v1/local`` (sessions, namespaces) and ``/api/v1/registry``, as coral-server 1.2 has them.

Every route needs ``Authorization: Bearer <key>`` with a key from the
coral-server config's ``[auth] keys`` (or the node's admin token): 401
otherwise. Errors carry coral-server's ``{"message"}`` body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from coral.api.coralserver.common import check_bearer, coral_server_errors, json_body
from coral.protocol.errors import InvalidMessage
from coral.sessions.graph import NamespaceRequest, parse_runtime_settings, parse_session_request
from coral.sessions.service import SessionManager

SESSIONS: web.AppKey[SessionManager] = web.AppKey("coral_sessions", SessionManager)
AUTH_KEYS: web.AppKey[Callable[[], Sequence[str]]] = web.AppKey("coral_server_auth_keys")


def authorize(request: web.Request) -> SessionManager:
    """Check the bearer key; the session manager."""
    check_bearer(request.headers.get("Authorization"), request.app[AUTH_KEYS]())
    return request.app[SESSIONS]


@coral_server_errors
async def create_session(request: web.Request) -> web.Response:
    """POST /api/v1/local/session: SessionRequest -> SessionIdentifier."""
    manager = authorize(request)
    session = await manager.create(parse_session_request(await json_body(request)))
    return web.json_response({"namespace": session.namespace.name, "sessionId": session.id})


@coral_server_errors
async def start_session(request: web.Request) -> web.Response:
    """POST /api/v1/local/session/{namespace}/{sessionId}: run a deferred session."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    settings = parse_runtime_settings(await json_body(request, allow_empty=True))
    await manager.launch(session, settings)
    return web.Response(status=200)


@coral_server_errors
async def session_state(request: web.Request) -> web.Response:
    """GET /api/v1/local/session/{namespace}/{sessionId}: SessionStateBase."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    return web.json_response(session.base_state(manager.clock()))


@coral_server_errors
async def session_state_extended(request: web.Request) -> web.Response:
    """GET .../extended: SessionStateExtended (agents and threads with messages)."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    return web.json_response(await manager.extended_state(session))


@coral_server_errors
async def agent_logs(request: web.Request) -> web.Response:
    """GET .../agent/{agentName}/logs: the agent's last output lines (ours)."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    agent = session.agent(request.match_info["agentName"])
    return web.json_response({"name": agent.name, "lines": list(agent.output.lines)})


@coral_server_errors
async def close_session(request: web.Request) -> web.Response:
    """DELETE /api/v1/local/session/{namespace}/{sessionId}: stop its agents and end it."""
    manager = authorize(request)
    session = manager.session(request.match_info["namespace"], request.match_info["sessionId"])
    await manager.end(session, "closed through the API")
    return web.Response(status=200)


@coral_server_errors
async def create_namespace(request: web.Request) -> web.Response:
    """POST /api/v1/local/namespace: SessionNamespaceRequest."""
    manager = authorize(request)
    try:
        wanted = NamespaceRequest.model_validate(await json_body(request))
    except ValueError as exc:
        raise InvalidMessage(f"invalid namespace: {exc}".splitlines()[0]) from None
    manager.create_namespace(wanted.name, wanted.deleteOnLastSessionExit, wanted.annotations)
    return web.Response(status=200)


@coral_server_errors
async def list_namespaces(request: web.Request) -> web.Response:
    """GET /api/v1/local/namespace: SessionNamespaceStateBase[]."""
    manager = authorize(request)
    return web.json_response([n.state() for n in manager.namespaces.values()])


@coral_server_errors
async def list_namespaces_extended(request: web.Request) -> web.Response:
    """GET /api/v1/local/namespace/extended: SessionNamespaceStateExtended[]."""
    manager = authorize(request)
    now = manager.clock()
    return web.json_response(
        [
            {"base": n.state(), "sessions": [s.base_state(now) for s in n.sessions.values()]}
            for n in manager.namespaces.values()
        ]
    )


@coral_server_errors
async def namespace_sessions(request: web.Request) -> web.Response:
    """GET /api/v1/local/namespace/{namespace}: SessionStateBase[]."""
    manager = authorize(request)
    namespace = manager.namespace(request.match_info["namespace"])
    now = manager.clock()
    return web.json_response([s.base_state(now) for s in namespace.sessions.values()])


@coral_server_errors
async def namespace_sessions_extended(request: web.Request) -> web.Response:
    """GET /api/v1/local/namespace/{namespace}/extended: SessionStateExtended[]."""
    manager = authorize(request)
    namespace = manager.namespace(request.match_info["namespace"])
    states: list[Any] = [await manager.extended_state(s) for s in namespace.sessions.values()]
    return web.json_response(states)


@coral_server_errors
async def delete_namespace(request: web.Request) -> web.Response:
    """DELETE /api/v1/local/namespace/{namespace}: end its sessions and remove it."""
    manager = authorize(request)
    await manager.delete_namespace(request.match_info["namespace"])
    return web.Response(status=200)


@coral_server_errors
async def registry(request: web.Request) -> web.Response:
    """GET /api/v1/registry: the registry sources and their agents' versions."""
    manager = authorize(request)
    return web.json_response(manager.registry.catalog())


@coral_server_errors
async def registry_agent(request: web.Request) -> web.Response:
    """GET /api/v1/registry/local/{agentName}/{agentVersion}: one agent."""
    manager = authorize(request)
    agent = manager.registry.resolve(
        request.match_info["agentName"], request.match_info["agentVersion"]
    )
    return web.json_response(agent.to_json())


def install_routes(app: web.Application) -> None:
    """Add the session, namespace and registry routes."""
    session = "/api/v1/local/session/{namespace}/{sessionId}"
    namespace = "/api/v1/local/namespace"
    app.router.add_post("/api/v1/local/session", create_session)
    app.router.add_post(session, start_session)
    app.router.add_get(session, session_state)
    app.router.add_delete(session, close_session)
    app.router.add_get(session + "/extended", session_state_extended)
    app.router.add_get(session + "/agent/{agentName}/logs", agent_logs)
    app.router.add_post(namespace, create_namespace)
    app.router.add_get(namespace, list_namespaces)
    app.router.add_get(namespace + "/extended", list_namespaces_extended)
    app.router.add_get(namespace + "/{namespace}", namespace_sessions)
    app.router.add_get(namespace + "/{namespace}/extended", namespace_sessions_extended)
    app.router.add_delete(namespace + "/{namespace}", delete_namespace)
    app.router.add_get("/api/v1/registry", registry)
    app.router.add_get("/api/v1/registry/local/{agentName}/{agentVersion}", registry_agent)
