"""Sessions as coral-server runs them, over the node's coordination engine.

A session belongs to a namespace, holds the agents of a checked graph and
their threads. Each session agent is a node-held agent (its own Ed25519 key,
registered in the directory, reached through ``/mcp/v1/{secret}/...``), so its
threads and messages are ordinary signed, persisted Coral threads carrying the
session id. Lifecycle: ``pending_execution`` (deferred) -> ``executed``
(agents launched) -> ``closing`` (agents stopped, threads closed, webhook sent)
-> removed. A session ends on DELETE, on its TTL, on ``coral_close_session``,
or when its last agent exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from coral.coordination import events as ev
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.service import MAX_PAGE, CoordinationService
from coral.protocol.errors import Conflict, InvalidMessage, NotFound
from coral.protocol.tasks import run_to_completion
from coral.sessions.events import EventBus, webhook_headers
from coral.sessions.graph import (
    GraphAgent,
    InvalidGraph,
    RuntimeSettings,
    SessionRequest,
    resolve_graph,
)
from coral.sessions.registry import AgentRegistry
from coral.sessions.runtime import (
    AgentOutput,
    DockerContainer,
    ExecutableProcess,
    container_url,
    docker_spec,
    executable_plan,
    find_executable,
    new_files_dir,
)
from coral.sessions.views import iso, message_view, thread_view

log = logging.getLogger("coral.sessions")

SessionStatus = Literal["pending_execution", "executed", "closing"]
AgentStatus = Literal["waiting", "running", "stopped"]


class NamespaceNotFound(NotFound):
    """No namespace has this name."""

    reason = "namespace_not_found"


class SessionNotFound(NotFound):
    """No session with this id lives in the namespace."""

    reason = "session_not_found"


class SessionAgentNotFound(NotFound):
    """The session has no agent by this name."""

    reason = "agent_not_found"


class NotPendingExecution(Conflict):
    """Only a deferred session that has not started may be started."""

    reason = "session_not_pending"


class AgentNotRunning(InvalidMessage):
    """The agent has no running runtime to stop."""

    reason = "agent_not_running"


class SessionAgentKeys(Protocol):
    """Makes the node-held identity of a session agent (adapter: held agents)."""

    async def create_session_agent(self, name: str, description: str) -> tuple[str, str]:
        """Create a keyed, registered agent; returns its did and its connection secret."""
        ...

    async def retire_session_agent(self, did: str) -> None:
        """Deregister the agent and forget its secret (its session ended)."""
        ...


WebhookPost = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class SessionServerSettings:
    """Addresses and secrets the sessions need from the node's configuration."""

    api_url: str
    webhook_secret: str
    default_wait_ms: int = 60_000
    stop_grace_s: float = 5.0


@dataclass
class Namespace:
    """A named group of sessions (coral-server's replacement for applications)."""

    name: str
    delete_on_last_session_exit: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """coral-server's ``SessionNamespaceStateBase``."""
        return {
            "name": self.name,
            "deleteOnLastSessionExit": self.delete_on_last_session_exit,
            "annotations": dict(self.annotations),
        }


@dataclass
class SessionAgent:
    """One agent of a session: graph entry, identity, runtime and status."""

    graph: GraphAgent
    did: str
    secret: str
    status: AgentStatus = "waiting"
    connected: bool = False
    waiting: bool = False
    start_ms: int | None = None
    runtime: ExecutableProcess | DockerContainer | None = None
    output: AgentOutput = field(default_factory=AgentOutput)
    usage: list[tuple[int, int]] = field(default_factory=list)
    files_dir: Path | None = None

    @property
    def name(self) -> str:
        """The agent's unique name in the session graph."""
        return self.graph.name

    def status_json(self) -> dict[str, Any]:
        """coral-server's ``SessionAgentStatus``."""
        if self.status == "waiting":
            return {"type": "waiting"}
        start = iso(self.start_ms) if self.start_ms is not None else None
        if self.status == "stopped":
            return {"type": "stopped", "startTime": start}
        connection: dict[str, Any] = {"type": "not_connected"}
        if self.connected:
            talk = "waiting_message" if self.waiting else "thinking"
            connection = {"type": "connected", "communicationStatus": {"type": talk}}
        return {"type": "running", "connectionStatus": connection, "startTime": start}

    def state(self) -> dict[str, Any]:
        """coral-server's ``SessionAgentState``."""
        agent = self.graph.agent
        return {
            "name": self.name,
            "registryAgentIdentifier": {
                "name": agent.name,
                "version": agent.version,
                "registrySourceId": {"type": "local"},
            },
            "status": self.status_json(),
            "description": self.graph.description,
            "links": sorted(self.graph.links),
            "annotations": dict(self.graph.annotations),
            "did": self.did,
            "pid": self.runtime.pid if isinstance(self.runtime, ExecutableProcess) else None,
        }


@dataclass
class Session:
    """One session: its agents (by graph name), status and event stream."""

    id: str
    namespace: Namespace
    agents: dict[str, SessionAgent]
    annotations: dict[str, str]
    created_ms: int
    status: SessionStatus = "pending_execution"
    execution_ms: int | None = None
    closing_ms: int | None = None
    settings: RuntimeSettings | None = None
    events: EventBus = field(default_factory=EventBus)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: Replaced by a fresh event each time one of its agents first connects.
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def agent_by_did(self, did: str) -> SessionAgent | None:
        """The session agent with this did, if any."""
        for agent in self.agents.values():
            if agent.did == did:
                return agent
        return None

    def agent(self, name: str) -> SessionAgent:
        """The agent called ``name``; SessionAgentNotFound otherwise."""
        agent = self.agents.get(name)
        if agent is None:
            raise SessionAgentNotFound(f"session {self.id} has no agent named {name!r}")
        return agent

    def status_json(self) -> dict[str, Any]:
        """coral-server's ``SessionStatus``."""
        if self.status == "pending_execution":
            return {"type": "pending_execution"}
        executed = iso(self.execution_ms or self.created_ms)
        if self.status == "executed":
            return {"type": "executed", "executionTime": executed}
        closing = iso(self.closing_ms or self.created_ms)
        return {"type": "closing", "executionTime": executed, "closingTime": closing}

    def base_state(self, now_ms: int) -> dict[str, Any]:
        """coral-server's ``SessionStateBase``."""
        return {
            "id": self.id,
            "timestamp": iso(now_ms),
            "namespace": self.namespace.name,
            "status": self.status_json(),
            "annotations": dict(self.annotations),
        }


class SessionManager:
    """Namespaces and sessions: create, launch, observe and end them.

    Sessions live in memory; their threads and messages live in the
    coordination store, so the calls that read them may raise
    ``StorageUnavailable``.
    """

    def __init__(
        self,
        registry: AgentRegistry,
        engine: CoordinationService,
        keys: SessionAgentKeys,
        settings: SessionServerSettings,
        post_webhook: WebhookPost,
        clock: Callable[[], int],
        node_names: Callable[[str], Awaitable[str]],
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.keys = keys
        self.settings = settings
        self.post_webhook = post_webhook
        self.clock = clock
        self._node_names = node_names
        self.namespaces: dict[str, Namespace] = {}
        self.events = EventBus()
        self._by_did: dict[str, Session] = {}
        self._by_id: dict[str, Session] = {}
        self._background: set[asyncio.Task[Any]] = set()
        engine.add_commit_listener(self._on_commit)

    # -- names ----------------------------------------------------------------

    def session_of(self, did: str) -> Session | None:
        """The live session whose agent has this did."""
        return self._by_did.get(did)

    def names_for(self, session: Session) -> Callable[[str], Awaitable[str]]:
        """did -> name within ``session`` (other agents by their directory name)."""

        async def name(did: str) -> str:
            agent = session.agent_by_did(did)
            return agent.name if agent is not None else await self._node_names(did)

        return name

    # -- namespaces -----------------------------------------------------------

    def create_namespace(
        self, name: str, delete_on_last_session_exit: bool, annotations: Mapping[str, str]
    ) -> Namespace:
        """Create a namespace (Conflict when it exists)."""
        if name in self.namespaces:
            raise Conflict(f"namespace {name!r} already exists", reason="namespace_exists")
        namespace = Namespace(name, delete_on_last_session_exit, dict(annotations))
        self.namespaces[name] = namespace
        self.events.publish(self._event("namespace_created", initialState=namespace.state()))
        return namespace

    def namespace(self, name: str) -> Namespace:
        """The namespace called ``name``; NamespaceNotFound otherwise."""
        namespace = self.namespaces.get(name)
        if namespace is None:
            raise NamespaceNotFound(f"namespace {name!r} not found")
        return namespace

    def session(self, namespace: str, session_id: str) -> Session:
        """The live session; NamespaceNotFound / SessionNotFound otherwise."""
        session = self.namespace(namespace).sessions.get(session_id)
        if session is None:
            raise SessionNotFound(f"session {session_id!r} not found in {namespace!r}")
        return session

    async def delete_namespace(self, name: str) -> None:
        """End every session of the namespace, then remove it.

        Raises:
            NamespaceNotFound: no namespace ``name``.

        Cancellation: sessions ended so far stay ended; see ``end`` for the
        one being ended.
        """
        namespace = self.namespace(name)
        for session in list(namespace.sessions.values()):
            await self.end(session, "namespace deleted")
        if self.namespaces.pop(name, None) is not None:
            self.events.publish(self._event("namespace_closed", finalState=namespace.state()))

    # -- sessions -------------------------------------------------------------

    def _check_runtimes(self, graph: list[GraphAgent]) -> None:
        for agent in graph:
            if agent.runtime == "executable":
                find_executable(agent)
            elif agent.runtime == "docker":
                DockerContainer.client()
            else:
                raise InvalidGraph(
                    f"agent {agent.name!r}: the {agent.runtime} runtime is not supported here"
                )

    async def create(self, request: SessionRequest) -> Session:
        """Check the request completely, then create the session (and launch it unless deferred).

        Raises:
            InvalidGraph: the graph is malformed or names an agent, runtime
                or option the registry does not have (before anything is made).
            RuntimeUnavailable: an agent's runtime cannot run here (no
                executable, no Docker daemon), before anything is made.
            NamespaceNotFound: the namespace to use does not exist.
            CoralError: ``SessionAgentKeys.create_session_agent``'s refusal;
                the agents created so far are retired first.

        An agent that fails to start does not raise: it is marked stopped,
        with the reason in its output.

        Cancellation: cancelled while the session agents are made, those
        made so far are retired (shielded) before the cancellation
        propagates, and no session exists. Cancelled while an immediate
        session launches, the launch finishes first (see ``launch``) and the
        session exists.
        """
        graph = resolve_graph(request.agentGraphRequest, self.registry)
        self._check_runtimes(graph)
        provider = request.namespaceProvider
        if provider.type == "use_existing":
            self.namespace(provider.name)  # NamespaceNotFound before anything is made
        agents: dict[str, SessionAgent] = {}
        try:
            for graph_agent in graph:
                did, secret = await self.keys.create_session_agent(
                    graph_agent.name, graph_agent.description
                )
                agents[graph_agent.name] = SessionAgent(graph_agent, did, secret)
            if provider.type == "use_existing":
                namespace = self.namespace(provider.name)
            else:
                wanted = provider.namespaceRequest
                namespace = self.namespaces.get(wanted.name) or self.create_namespace(
                    wanted.name, wanted.deleteOnLastSessionExit, wanted.annotations
                )
        except BaseException:
            # Nothing half-made: retire the agents created so far (also on cancellation).
            for made in agents.values():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.keys.retire_session_agent(made.did))
            raise
        session = Session(
            id=str(uuid.uuid4()),
            namespace=namespace,
            agents=agents,
            annotations=dict(request.annotations),
            created_ms=self.clock(),
        )
        namespace.sessions[session.id] = session
        self._by_id[session.id] = session
        for agent in agents.values():
            self._by_did[agent.did] = session
        self.events.publish(
            self._event(
                "session_created",
                initialSessionState=session.base_state(self.clock()),
                namespaceState=namespace.state(),
            )
        )
        log.info("session %s created in %s (%d agents)", session.id, namespace.name, len(agents))
        if request.execution.mode == "immediate":
            await self.launch(session, request.execution.runtimeSettings)
        return session

    def connection_url(self, agent: SessionAgent, transport: str) -> str:
        """The agent's own MCP endpoint for ``transport``."""
        base = f"{self.settings.api_url}/mcp/v1/{agent.secret}"
        return f"{base}/sse/" if transport == "sse" else f"{base}/mcp"

    def coral_environment(self, session: Session, agent: SessionAgent) -> dict[str, str]:
        """The ``CORAL_*`` variables coral-server gives every agent it launches."""
        runtime = agent.graph.agent.executable or agent.graph.agent.docker
        assert runtime is not None
        if agent.graph.runtime == "docker" and agent.graph.agent.docker is not None:
            runtime = agent.graph.agent.docker
        env = {
            "CORAL_CONNECTION_URL": self.connection_url(agent, runtime.transport),
            "CORAL_AGENT_ID": agent.name,
            "CORAL_AGENT_SECRET": agent.secret,
            "CORAL_SESSION_ID": session.id,
            "CORAL_API_URL": self.settings.api_url,
            "CORAL_RUNTIME_ID": agent.graph.runtime,
        }
        if agent.graph.system_prompt is not None:
            env["CORAL_PROMPT_SYSTEM"] = agent.graph.system_prompt
        if agent.graph.runtime == "docker":
            env["CORAL_CONNECTION_URL"] = container_url(env["CORAL_CONNECTION_URL"])
            env["CORAL_API_URL"] = container_url(env["CORAL_API_URL"])
        return env

    async def launch(self, session: Session, settings: RuntimeSettings) -> None:
        """Start every agent of a pending session, one after the other.

        An agent that fails to start is marked stopped (its output says why);
        when every agent has stopped the session ends by itself.

        Raises:
            NotPendingExecution: the session is not pending execution.

        Should the session begin ending meanwhile, the agents not yet started
        stay waiting, an agent starting just then is stopped again, and no
        TTL is armed.

        Cancellation: the launch (every agent started, the TTL armed) runs as
        one step that finishes before ``CancelledError`` is raised, so a
        cancelled launch leaves no agent waiting and no session without its
        TTL.
        """
        if session.status != "pending_execution":
            raise NotPendingExecution(f"session {session.id} is not pending execution")
        session.status = "executed"
        session.execution_ms = self.clock()
        session.settings = settings
        self.events.publish(
            self._event(
                "session_running",
                sessionState=session.base_state(self.clock()),
                namespaceState=session.namespace.state(),
            )
        )
        await run_to_completion(self._launch_agents(session, settings))

    async def _launch_agents(self, session: Session, settings: RuntimeSettings) -> None:
        for agent in session.agents.values():
            if session.status != "executed":
                return  # the session is ending: start nothing more
            await self._start_agent(session, agent)
        if settings.ttl is not None and session.status == "executed":
            self._spawn(session, self._ttl(session, settings.ttl))

    async def _ttl(self, session: Session, ttl_ms: int) -> None:
        await asyncio.sleep(ttl_ms / 1000)
        await self.end(session, "ttl expired")

    def _spawn(self, session: Session | None, job: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(job)
        tasks = session.tasks if session is not None else self._background
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _start_agent(self, session: Session, agent: SessionAgent) -> None:
        coral_env = self.coral_environment(session, agent)
        agent.start_ms = self.clock()
        agent.status = "running"
        try:
            if agent.graph.runtime == "docker":
                labels = {"coral.session": session.id, "coral.agent": agent.name}
                spec = docker_spec(agent.graph, coral_env, labels)
                agent.runtime = DockerContainer(agent.name, spec, agent.output)
            else:
                agent.files_dir = new_files_dir()
                plan = executable_plan(agent.graph, coral_env, os.environ, agent.files_dir)
                agent.runtime = ExecutableProcess(agent.name, plan, agent.output)
            await agent.runtime.start(lambda code: self._on_exit(session, agent, code))
        except Exception as exc:
            log.error("session %s: agent %s failed to start: %s", session.id, agent.name, exc)
            agent.output.add("coral", f"failed to start: {exc}")
            agent.runtime = None
            self._on_exit(session, agent, None)
            return
        self._publish(session, "runtime_started", name=agent.name)
        if session.status != "executed":
            # ``end`` ran while this agent was starting and found nothing to stop yet.
            await agent.runtime.stop(self.settings.stop_grace_s)

    def _on_exit(self, session: Session, agent: SessionAgent, code: int | None) -> None:
        agent.status = "stopped"
        agent.connected = agent.waiting = False
        if agent.start_ms is not None:
            agent.usage.append((agent.start_ms, self.clock()))
        if agent.files_dir is not None:
            shutil.rmtree(agent.files_dir, ignore_errors=True)
        self._publish(session, "runtime_stopped", name=agent.name)
        if session.status == "executed" and all(
            a.status == "stopped" for a in session.agents.values()
        ):
            self._spawn(None, self.end(session, "all agents exited"))

    async def stop_agent(self, session: Session, name: str) -> None:
        """Stop one running agent (SIGTERM, then SIGKILL after the grace period).

        Raises:
            SessionAgentNotFound: the session has no agent ``name``.
            AgentNotRunning: the agent has no running runtime.

        Cancellation: see ``ExecutableProcess.stop``: a cancelled stop sends
        SIGKILL at once.
        """
        agent = session.agent(name)
        if agent.status != "running" or agent.runtime is None:
            raise AgentNotRunning(f"agent {name!r} is not running")
        await agent.runtime.stop(self.settings.stop_grace_s)

    async def end(self, session: Session, reason: str) -> None:
        """Stop the agents (SIGTERM then SIGKILL), close its threads, send the webhook, remove it.

        Idempotent: a second call waits for the first to finish. Failures to
        close the threads or retire an agent are logged, not raised; the
        webhook is sent in the background.

        Raises:
            StorageUnavailable: reading the threads for an extended end
                report failed (the session stays ``closing``).

        Cancellation: once the session is ``closing``, the ending (agents
        stopped, threads closed, webhook queued, agents retired, session
        removed or held) runs as one step that finishes before
        ``CancelledError`` is raised. A call cancelled while it waits for
        another call's ending holds nothing; the other call goes on.
        """
        if session.status == "closing":
            await session.ended.wait()
            return
        log.info("session %s ending: %s", session.id, reason)
        session.end_reason = reason
        session.status = "closing"
        session.closing_ms = self.clock()
        self.events.publish(
            self._event(
                "session_closing",
                sessionState=session.base_state(self.clock()),
                namespaceState=session.namespace.state(),
            )
        )
        current = asyncio.current_task()
        for task in list(session.tasks):
            if task is not current:
                task.cancel()
        await run_to_completion(self._finish_end(session, reason))

    async def _finish_end(self, session: Session, reason: str) -> None:
        await asyncio.gather(
            *(
                a.runtime.stop(self.settings.stop_grace_s)
                for a in session.agents.values()
                if a.runtime is not None
            )
        )
        members = [a.did for a in session.agents.values()]
        try:
            await self.engine.close_session(session.id, members, f"session ended: {reason}")
        except Exception:
            log.exception("session %s: closing its threads failed", session.id)
        settings = session.settings or RuntimeSettings()
        if settings.webhooks.sessionEnd is not None:
            report = await self.end_report(session, settings.extendedEndReport)
            self._spawn(None, self._send_webhook(settings.webhooks.sessionEnd.url, report))
        hold_ms = 0
        mode = settings.persistenceMode
        if mode.mode == "hold_after_exit":
            hold_ms = mode.duration
        elif mode.mode == "minimum_time":
            hold_ms = max(0, session.created_ms + mode.time - self.clock())
        for member in members:
            try:
                await self.keys.retire_session_agent(member)
            except Exception:
                log.exception("session %s: retiring agent %s failed", session.id, member)
        if hold_ms:
            self._spawn(None, self._remove_later(session, hold_ms))
        else:
            self._remove(session)

    async def _remove_later(self, session: Session, delay_ms: int) -> None:
        await asyncio.sleep(delay_ms / 1000)
        self._remove(session)

    def _remove(self, session: Session) -> None:
        if session.ended.is_set():
            return
        namespace = session.namespace
        self.events.publish(
            self._event(
                "session_closed",
                finalSessionState=session.base_state(self.clock()),
                namespaceState=namespace.state(),
            )
        )
        namespace.sessions.pop(session.id, None)
        self._by_id.pop(session.id, None)
        for agent in session.agents.values():
            self._by_did.pop(agent.did, None)
        session.events.close()
        session.ended.set()
        if not namespace.sessions and namespace.delete_on_last_session_exit:
            if self.namespaces.pop(namespace.name, None) is not None:
                self.events.publish(self._event("namespace_closed", finalState=namespace.state()))

    async def _send_webhook(self, url: str, report: dict[str, Any]) -> None:
        body = json.dumps(report, separators=(",", ":")).encode()
        headers = webhook_headers(self.settings.webhook_secret, body, self.clock() // 1000)
        try:
            await self.post_webhook(url, body, headers)
            log.info("session-end webhook delivered to %s", url)
        except Exception as exc:
            log.warning("session-end webhook to %s failed: %s", url, exc)

    async def end_report(self, session: Session, extended: bool) -> dict[str, Any]:
        """coral-server's ``SessionEndReport``.

        Raises:
            StorageUnavailable: ``extended`` and the threads could not be read.
        """
        now = self.clock()
        if extended:
            state: dict[str, Any] = {
                "type": "extended",
                "state": await self.extended_state(session),
            }
        else:
            state = {"type": "base", "state": session.base_state(now)}
        stats = []
        for agent in session.agents.values():
            for start, end in agent.usage:
                stats.append(
                    {
                        "name": agent.name,
                        "registryIdentifier": agent.state()["registryAgentIdentifier"],
                        "startTime": iso(start),
                        "endTime": iso(end),
                        "annotations": dict(agent.graph.annotations),
                    }
                )
        return {
            "timestamp": iso(now),
            "namespaceState": session.namespace.state(),
            "sessionState": state,
            "agentStats": stats,
        }

    async def close_all(self) -> None:
        """End every session (the node is stopping), then its background tasks.

        Cancellation: sessions ended so far stay ended; the background tasks
        (webhooks, delayed removals) are then not cancelled.
        """
        for namespace in list(self.namespaces.values()):
            for session in list(namespace.sessions.values()):
                if session.status == "closing" and session.closing_ms is not None:
                    self._remove(session)  # ended, held for its persistence time: drop it now
                else:
                    await self.end(session, "node stopping")
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.events.close()

    # -- state ------------------------------------------------------------------

    async def threads(self, session: Session) -> list[Thread]:
        """Every thread of the session that one of its agents is in, oldest first.

        Raises:
            StorageUnavailable: the coordination store could not be read.
        """
        found: dict[str, Thread] = {}
        for agent in session.agents.values():
            for thread in await self.engine.list_threads(agent.did, session.id):
                found.setdefault(thread.id, thread)
        return sorted(found.values(), key=lambda t: (t.created_at, t.id))

    async def thread_json(self, session: Session, thread: Thread) -> dict[str, Any]:
        """A session thread with its messages, as coral-server's ``SessionThread``.

        Raises:
            StorageUnavailable: the coordination store could not be read.
        """
        entries = await self.engine.store.history(thread.id, 0, MAX_PAGE)
        return await thread_view(thread, self.names_for(session), entries)

    async def extended_state(self, session: Session) -> dict[str, Any]:
        """coral-server's ``SessionStateExtended``.

        Raises:
            StorageUnavailable: the coordination store could not be read.
        """
        return {
            "base": session.base_state(self.clock()),
            "agents": [a.state() for a in session.agents.values()],
            "threads": [await self.thread_json(session, t) for t in await self.threads(session)],
        }

    def mark_connected(self, did: str) -> None:
        """An MCP request of this agent arrived: it is connected."""
        session = self._by_did.get(did)
        agent = session.agent_by_did(did) if session is not None else None
        if session is None or agent is None or agent.connected:
            return
        agent.connected = True
        self._publish(session, "agent_connected", name=agent.name)
        session.connected.set()
        session.connected = asyncio.Event()

    def blocking_peers(self, session: Session, agent: SessionAgent) -> list[SessionAgent]:
        """Blocking agents reachable from ``agent`` through links of blocking agents."""
        found: dict[str, SessionAgent] = {}
        stack = [agent]
        while stack:
            current = stack.pop()
            for name in sorted(current.graph.links):
                peer = session.agents.get(name)
                if peer is None or not peer.graph.blocking or peer is agent or name in found:
                    continue
                found[name] = peer
                stack.append(peer)
        return list(found.values())

    async def wait_for_blocking(self, did: str, timeout_s: float = 60.0) -> None:
        """For a ``blocking`` agent: wait until its blocking peers have connected (at most 60 s).

        As coral-server: a group with blocking agents talks only once they are all
        there. On timeout, or on finding the session no longer executing, it
        logs and lets the agent go on; it never raises a refusal.

        Cancellation: holds nothing; the wait just ends.
        """
        session = self._by_did.get(did)
        agent = session.agent_by_did(did) if session is not None else None
        if session is None or agent is None or not agent.graph.blocking:
            return
        peers = self.blocking_peers(session, agent)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not all(p.connected for p in peers):
            remaining = deadline - loop.time()
            if remaining <= 0 or session.status != "executed":
                log.warning(
                    "session %s: %s gave up waiting for blocking agents", session.id, agent.name
                )
                return
            try:
                await asyncio.wait_for(session.connected.wait(), remaining)
            except TimeoutError:
                pass

    def mark_activity(
        self,
        did: str,
        *,
        waiting: bool,
        filters: list[dict[str, Any]] | None = None,
        message: dict[str, Any] | None = None,
    ) -> None:
        """An agent called a tool (it is connected); a wait starts or stops.

        As coral-server: ``agent_wait_start`` carries the wait's filters and
        ``agent_wait_stop`` the message that ended it (none on a timeout).
        """
        self.mark_connected(did)
        session = self._by_did.get(did)
        agent = session.agent_by_did(did) if session is not None else None
        if session is None or agent is None:
            return
        if waiting and not agent.waiting:
            self._publish(session, "agent_wait_start", name=agent.name, filters=filters or [])
        elif not waiting and agent.waiting and message is not None:
            self._publish(session, "agent_wait_stop", name=agent.name, message=message)
        agent.waiting = waiting

    # -- events -----------------------------------------------------------------

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return {"type": kind, "timestamp": iso(self.clock()), **data}

    def _publish(self, session: Session, kind: str, **data: Any) -> None:
        session.events.publish(self._event(kind, **data))

    def _on_commit(self, thread: Thread, entries: tuple[ThreadEntry, ...]) -> None:
        session_id = thread.session_id
        if session_id is None:
            return
        session = self._by_id.get(session_id)
        if session is None:
            return
        self._spawn(session, self._publish_entries(session, thread, entries))

    async def _publish_entries(
        self, session: Session, thread: Thread, entries: Iterable[ThreadEntry]
    ) -> None:
        names = self.names_for(session)
        for entry in entries:
            if not entry.system:
                message = await message_view(entry, names)
                self._publish(session, "thread_message_sent", message=message)
                continue
            event = ev.event_name(entry.message)
            data = ev.event_data(entry.message)
            if event == ev.THREAD_CREATED:
                self._publish(session, "thread_created", thread=await thread_view(thread, names))
            elif event in (ev.PARTICIPANT_ADDED, ev.PARTICIPANT_REMOVED):
                kind = "added" if event == ev.PARTICIPANT_ADDED else "removed"
                name = await names(str(data.get("agent", "")))
                self._publish(session, f"thread_participant_{kind}", threadId=thread.id, name=name)
            elif event == ev.THREAD_CLOSED:
                summary = str(data.get("summary", ""))
                self._publish(session, "thread_closed", threadId=thread.id, summary=summary)
