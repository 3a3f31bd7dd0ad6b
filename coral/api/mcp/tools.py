"""coral-server's MCP tools over the Coral coordination engine.

Agents are named, not addressed by did, exactly as in coral-server: an agent
of a session sees the other agents of its session by their graph names; other
MCP agents see directory names. Every write is a message signed with the
calling agent's node-held key and passed through the gateway. Results have
coral-server 1.2's shapes: ``{"thread": SessionThread}`` for a new thread,
``{"message": "..."}`` for add/remove/close, ``{"status", "message"}`` for a
post and for waits, with ISO-8601 timestamps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

from coral.agents.directory import AgentDirectory
from coral.api.mcp.held_agents import HeldAgent, HeldAgents
from coral.api.mcp.tool_specs import (
    CLOSE_SESSION_TOOL,
    INSTRUCTION,
    TOOL_SPECS,
    ToolArgumentError,
    UnknownTool,
    check_arguments,
    spec_of,
)
from coral.coordination.model import Thread, ThreadEntry, WaitKind
from coral.coordination.service import MAX_WAIT_MS, CoordinationService
from coral.protocol.errors import CoralError, NotFound
from coral.sessions.events import sign_body
from coral.sessions.views import Names, iso, message_view, state_thread, thread_view

__all__ = [
    "INSTRUCTION",
    "TOOL_SPECS",
    "CoralTools",
    "ToolArgumentError",
    "UnknownTool",
    "check_arguments",
]

MESSAGE_RECEIVED = "Message received"
TIMEOUT_REACHED = "Timeout reached"
STATE_URI = "coral://state"
INSTRUCTION_URI = "coral://instruction"
#: Unix times below this are seconds, not milliseconds (year 5138 in seconds).
_SECONDS_LIMIT = 100_000_000_000

JsonObject = dict[str, Any]


class AgentScope(Protocol):
    """An agent's session, as the tools need it (``coral.sessions.service.Session``)."""

    id: str


class Scopes(Protocol):
    """Session membership of agents (``coral.sessions.service.SessionManager``)."""

    def session_of(self, did: str) -> Any:
        """The live session of the agent with this did, or None."""
        ...

    def names_for(self, session: Any) -> Callable[[str], Awaitable[str]]:
        """did -> name inside ``session``."""
        ...

    def mark_activity(
        self,
        did: str,
        *,
        waiting: bool,
        filters: list[JsonObject] | None = None,
        message: JsonObject | None = None,
    ) -> None:
        """The agent is connected; a wait starts (with its filters) or stops (with its message)."""
        ...

    async def wait_for_blocking(self, did: str, timeout_s: float = 60.0) -> None:
        """Hold a blocking agent until its blocking peers are connected."""
        ...

    async def end(self, session: Any, reason: str) -> None:
        """End the session."""
        ...


class WaitCursors(Protocol):
    """Durable wait cursors (``coral.store.wait_cursors_sqlite``, ``wait_cursors_postgres``)."""

    async def get(self, agent: str, key: str) -> int:
        """The stored cursor (0 when none)."""
        ...

    async def put(self, agent: str, key: str, cursor: int) -> None:
        """Store a cursor."""
        ...


class CustomToolCaller(Protocol):
    """POSTs a custom tool call to the app; returns the HTTP status and body text."""

    async def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """Send the call; raises OSError-like errors when the app is unreachable."""
        ...


class CustomToolFailed(CoralError):
    """The app behind a custom tool refused or could not be reached."""

    reason = "custom_tool_failed"
    category = "unavailable"


class MemoryWaitCursors:
    """Wait cursors in memory (tests; a node uses the SQLite store)."""

    def __init__(self) -> None:
        self._cursors: dict[tuple[str, str], int] = {}

    async def get(self, agent: str, key: str) -> int:
        """The stored cursor (0 when none)."""
        return self._cursors.get((agent, key), 0)

    async def put(self, agent: str, key: str, cursor: int) -> None:
        """Store a cursor (it only moves forward)."""
        self._cursors[(agent, key)] = max(cursor, self._cursors.get((agent, key), 0))


class CoralTools:
    """Runs the MCP tools for one node; the calling agent is passed to each call."""

    def __init__(
        self,
        held: HeldAgents,
        directory: AgentDirectory,
        engine: CoordinationService,
        *,
        scopes: Scopes | None = None,
        cursors: WaitCursors | None = None,
        max_wait_ms: int = MAX_WAIT_MS,
        default_wait_ms: int = MAX_WAIT_MS,
    ) -> None:
        self.held = held
        self.directory = directory
        self.engine = engine
        self.scopes = scopes
        self.cursors: WaitCursors = cursors if cursors is not None else MemoryWaitCursors()
        self.max_wait_ms = max_wait_ms
        self.default_wait_ms = min(default_wait_ms, max_wait_ms)
        #: How graph custom tools reach their app, and the secret that signs the calls.
        self.custom_tool_caller: CustomToolCaller | None = None
        self.custom_tool_secret = ""
        self._names: dict[str, str] = {}
        H = Callable[[HeldAgent, JsonObject], Awaitable[JsonObject]]
        self._handlers: dict[str, H] = {
            "coral_create_thread": lambda a, x: self.create_thread(
                a, x["threadName"], x["participantNames"]
            ),
            "create_thread": lambda a, x: self.legacy_create_thread(
                a, x["threadName"], x["participantIds"]
            ),
            "coral_close_thread": lambda a, x: self.close_thread(a, x["threadId"], x["summary"]),
            "close_thread": lambda a, x: self.close_thread(a, x["threadId"], x["summary"]),
            "coral_add_participant": lambda a, x: self.add_participant(
                a, x["threadId"], x["participantName"]
            ),
            "add_participant": lambda a, x: self.add_participant(
                a, x["threadId"], x["participantId"]
            ),
            "coral_remove_participant": lambda a, x: self.remove_participant(
                a, x["threadId"], x["participantName"]
            ),
            "remove_participant": lambda a, x: self.remove_participant(
                a, x["threadId"], x["participantId"]
            ),
            "coral_send_message": lambda a, x: self.send_message(
                a, x["threadId"], x["content"], x.get("mentions", [])
            ),
            "send_message": lambda a, x: self.send_message(
                a, x["threadId"], x["content"], x.get("mentions", [])
            ),
            "coral_wait_for_message": lambda a, x: self.wait_one(a, "message", None, x),
            "coral_wait_for_mention": lambda a, x: self.wait_one(a, "mention", None, x),
            "coral_wait_for_agent": lambda a, x: self.wait_for_agent(a, x["agentName"], x),
            "list_agents": lambda a, x: self.list_agents(a, x.get("includeDetails", True)),
            "wait_for_mentions": lambda a, x: self.wait_for_mentions(a, x.get("timeoutMs", 30_000)),
            CLOSE_SESSION_TOOL: lambda a, x: self.close_session(a, x["reason"]),
        }

    # -- listing ----------------------------------------------------------------

    def session_of(self, agent: HeldAgent) -> Any:
        """The live session of ``agent`` (None for agents outside sessions)."""
        return self.scopes.session_of(agent.did) if self.scopes is not None else None

    def _has_close_session(self, agent: HeldAgent) -> bool:
        session = self.session_of(agent)
        if session is None:
            return False
        member = session.agent_by_did(agent.did)
        return member is not None and "close_session_tool" in member.graph.plugins

    def _custom_tools(self, agent: HeldAgent) -> dict[str, Any]:
        session = self.session_of(agent)
        member = session.agent_by_did(agent.did) if session is not None else None
        if member is None:
            return {}
        return {n: t for n, t in member.graph.custom_tools.items() if n not in self._handlers}

    def tools_for(self, agent: HeldAgent | None) -> dict[str, tuple[str, JsonObject]]:
        """The tools ``agent`` may call: the coral ones, coral_close_session with its plugin,
        and the graph custom tools it was given."""
        tools = dict(TOOL_SPECS)
        if agent is not None and self._has_close_session(agent):
            tools[CLOSE_SESSION_TOOL] = spec_of(CLOSE_SESSION_TOOL)
        if agent is not None:
            for name, custom in self._custom_tools(agent).items():
                description = custom.description or custom.title or f"the app's {name} tool"
                tools[name] = (description, dict(custom.inputSchema))
        return tools

    async def call(self, agent: HeldAgent, tool: str, args: JsonObject) -> JsonObject:
        """Run one tool as ``agent``; typed CoralErrors describe every refusal."""
        if tool not in self.tools_for(agent):
            raise UnknownTool(f"no tool named {tool!r}")
        if self.scopes is not None:
            await self.scopes.wait_for_blocking(agent.did)
        custom = self._custom_tools(agent).get(tool)
        if custom is not None:
            return await self.call_custom(agent, tool, custom, args)
        check_arguments(tool, args)
        waiting = "wait" in tool
        if self.scopes is None:
            return await self._handlers[tool](agent, args)
        filters = self._wait_filters(agent, tool, args) if waiting else None
        self.scopes.mark_activity(agent.did, waiting=waiting, filters=filters)
        result: JsonObject | None = None
        try:
            result = await self._handlers[tool](agent, args)
            return result
        finally:
            if waiting:
                found = result.get("message") if result is not None else None
                self.scopes.mark_activity(
                    agent.did, waiting=False, message=found if isinstance(found, dict) else None
                )

    def _wait_filters(self, agent: HeldAgent, tool: str, args: JsonObject) -> list[JsonObject]:
        """coral-server's ``SessionThreadMessageFilter`` list of a wait tool."""
        if tool in ("coral_wait_for_mention", "wait_for_mentions"):
            session = self.session_of(agent)
            member = session.agent_by_did(agent.did) if session is not None else None
            return [{"type": "mentions", "name": member.name if member else agent.name}]
        if tool == "coral_wait_for_agent":
            return [{"type": "from", "name": args.get("agentName", "")}]
        return []

    # -- names ----------------------------------------------------------------

    async def name_of(self, did: str) -> str:
        """The directory name of ``did`` (the node itself is ``coral-node``)."""
        if did == self.held.node.did:
            return "coral-node"
        if did not in self._names:
            try:
                self._names[did] = (await self.directory.get(did)).manifest.name
            except CoralError:
                return did
        return self._names[did]

    def names(self, agent: HeldAgent) -> Names:
        """did -> name as ``agent`` sees them (its session's names first)."""
        session = self.session_of(agent)
        if session is None or self.scopes is None:
            return self.name_of
        return self.scopes.names_for(session)

    async def did_of(self, agent: HeldAgent, name: str) -> str:
        """The did of the agent ``agent`` calls ``name``; NotFound when none is."""
        session = self.session_of(agent)
        if session is not None:
            member = session.agents.get(name)
            if member is None:
                raise NotFound(f"agent {name!r} is not in this session", reason="missing_agent")
            return str(member.did)
        return await self.directory.resolve_did(name)

    # -- writes ---------------------------------------------------------------

    async def _new_thread(self, agent: HeldAgent, name: str, names: list[str]) -> Thread:
        session = self.session_of(agent)
        me = session.agent_by_did(agent.did).name if session is not None else agent.name
        participants = [await self.did_of(agent, n) for n in names if n != me]
        data: JsonObject = {"name": name, "participants": participants}
        if session is not None:
            data["session_id"] = session.id
        thread = self._local(await self.held.submit(agent, kind="thread.create", data=data))
        assert isinstance(thread, Thread)
        return thread

    @staticmethod
    def _local(result: object) -> Any:
        if not isinstance(result, (Thread, ThreadEntry)):
            raise NotFound("the thread lives on another node", reason="remote_thread")
        return result

    async def create_thread(self, agent: HeldAgent, name: str, names: list[str]) -> JsonObject:
        """``coral_create_thread``: ``{"thread": SessionThread}``."""
        thread = await self._new_thread(agent, name, names)
        return {"thread": await thread_view(thread, self.names(agent))}

    async def legacy_create_thread(
        self, agent: HeldAgent, name: str, names: list[str]
    ) -> JsonObject:
        """v0 ``create_thread``: the thread itself."""
        return await thread_view(await self._new_thread(agent, name, names), self.names(agent))

    async def close_thread(self, agent: HeldAgent, thread_id: str, summary: str) -> JsonObject:
        """Close a thread with its summary."""
        self._local(
            await self.held.submit(
                agent, kind="thread.close", thread=thread_id, data={"summary": summary}
            )
        )
        return {"message": f"Successfully closed thread {thread_id}"}

    async def add_participant(self, agent: HeldAgent, thread_id: str, name: str) -> JsonObject:
        """Add a participant (by name); it is given the whole history."""
        did = await self.did_of(agent, name)
        self._local(
            await self.held.submit(
                agent, kind="thread.add_participant", thread=thread_id, data={"agent": did}
            )
        )
        return {"message": f"Successfully added participant {name} to thread {thread_id}"}

    async def remove_participant(self, agent: HeldAgent, thread_id: str, name: str) -> JsonObject:
        """Remove a participant (by name)."""
        did = await self.did_of(agent, name)
        self._local(
            await self.held.submit(
                agent, kind="thread.remove_participant", thread=thread_id, data={"agent": did}
            )
        )
        return {"message": f"Successfully removed participant {name} from thread {thread_id}"}

    async def send_message(
        self, agent: HeldAgent, thread_id: str, content: str, mentions: list[str]
    ) -> JsonObject:
        """Post ``content`` to a thread, mentioning participants by name."""
        dids = [await self.did_of(agent, n) for n in mentions]
        entry = self._local(
            await self.held.submit(agent, thread=thread_id, text=content, mentions=dids)
        )
        return {
            "status": "Message sent successfully",
            "message": await message_view(entry, self.names(agent)),
        }

    async def close_session(self, agent: HeldAgent, reason: str) -> JsonObject:
        """``coral_close_session``: end the caller's session (its agents are stopped)."""
        session = self.session_of(agent)
        if session is None or self.scopes is None:
            raise NotFound("you are not in a session", reason="no_session")
        scopes = self.scopes
        # The caller is one of the agents being stopped: answer first, end right after.
        task = asyncio.get_running_loop().create_task(scopes.end(session, f"closed by {reason}"))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        return {"message": "Successfully closed session"}

    async def call_custom(
        self, agent: HeldAgent, tool: str, custom: Any, args: JsonObject
    ) -> JsonObject:
        """Forward a graph custom tool call to the app, as coral-server does.

        POST ``{url}/{sessionId}/{agentName}`` with the arguments as JSON, signed
        ``hex(HMAC-SHA256(customToolSecret, body))`` in the tool's signature header,
        plus ``X-Coral-Namespace``, ``X-Coral-SessionId``, ``X-Coral-AgentName``.
        A JSON object answer is the result; other text comes back as ``{"result"}``.
        Raises CustomToolFailed for a non-200 answer or an unreachable app.
        """
        session = self.session_of(agent)
        member = session.agent_by_did(agent.did)
        if self.custom_tool_caller is None:
            raise CustomToolFailed("custom tools are not available on this node")
        body = json.dumps(args, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            custom.transport.signatureHeader: sign_body(self.custom_tool_secret, body),
            "X-Coral-Namespace": session.namespace.name,
            "X-Coral-SessionId": session.id,
            "X-Coral-AgentName": member.name,
        }
        url = f"{custom.transport.url.rstrip('/')}/{quote(session.id)}/{quote(member.name)}"
        try:
            status, text = await self.custom_tool_caller(url, body, headers)
        except Exception:  # never leak the app's address or error to the agent
            raise CustomToolFailed("Unknown error") from None
        if status != 200:
            raise CustomToolFailed(f"Error code {status} returned")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"result": text}

    # -- reads ----------------------------------------------------------------

    async def list_agents(self, agent: HeldAgent, details: bool) -> JsonObject:
        """Every live agent this node knows (a session agent: its session's agents)."""
        session = self.session_of(agent)
        if session is not None:
            members = [a for a in session.agents.values() if a.did != agent.did]
            if not details:
                return {"agents": [a.name for a in members]}
            return {
                "agents": [{"name": a.name, "description": a.graph.description} for a in members]
            }
        records = await self.directory.search()
        if not details:
            return {"agents": [r.manifest.name for r in records]}
        return {
            "agents": [
                {
                    "name": r.manifest.name,
                    "description": r.manifest.description,
                    "capabilities": list(r.manifest.capabilities),
                }
                for r in records
            ]
        }

    async def wait_for_agent(self, agent: HeldAgent, name: str, args: JsonObject) -> JsonObject:
        """Wait for the next message from the agent called ``name``."""
        return await self.wait_one(agent, "agent", await self.did_of(agent, name), args)

    async def wait_one(
        self, agent: HeldAgent, kind: WaitKind, from_did: str | None, args: JsonObject
    ) -> JsonObject:
        """The first new matching message recorded at or after ``currentUnixTime``, or a timeout.

        The wait is capped at ``max_wait_ms``. Without ``afterCursor`` it resumes
        after the last message a wait of this kind returned (stored durably);
        with it, exactly after that cursor, so a re-issued request loses nothing.
        """
        since = int(args.get("currentUnixTime", time.time() * 1000))
        since_ms = since * 1000 if 0 <= since < _SECONDS_LIMIT else since
        max_wait_ms = min(int(args.get("maxWaitMs", self.default_wait_ms)), self.max_wait_ms)
        key = f"{kind}:{from_did or ''}"
        after = args.get("afterCursor")
        cursor = int(after) if after is not None else await self.cursors.get(agent.did, key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000
        names = self.names(agent)
        while (remaining := int((deadline - loop.time()) * 1000)) > 0:
            result = await self.engine.wait(
                agent.did,
                kind,
                from_agent=from_did,
                after=cursor,
                timeout_ms=min(remaining, MAX_WAIT_MS),
                limit=1,
            )
            if result.timed_out:
                continue
            item = result.entries[0]
            cursor = item.cursor
            await self.cursors.put(agent.did, key, cursor)
            entry = item.entry
            if entry.system or entry.sender == agent.did or entry.recorded_at < since_ms:
                continue
            return {
                "message": await message_view(entry, names),
                "status": MESSAGE_RECEIVED,
                "cursor": cursor,
            }
        return {"status": TIMEOUT_REACHED, "cursor": cursor}

    async def wait_for_mentions(self, agent: HeldAgent, timeout_ms: int) -> JsonObject:
        """v0 semantics: block until mentioned, then return every unread mention."""
        key = "legacy-mention:"
        result = await self.engine.wait(
            agent.did,
            "mention",
            after=await self.cursors.get(agent.did, key),
            timeout_ms=min(timeout_ms, self.max_wait_ms, MAX_WAIT_MS),
        )
        await self.cursors.put(agent.did, key, result.cursor)
        names = self.names(agent)
        messages = [
            await message_view(i.entry, names) for i in result.entries if not i.entry.system
        ]
        return {"messages": messages, "status": MESSAGE_RECEIVED if messages else TIMEOUT_REACHED}

    # -- resources --------------------------------------------------------------

    async def state(self, agent: HeldAgent, per_thread: int = 50) -> JsonObject:
        """The agent, its contacts and its threads (``coral://state`` data)."""
        names = self.names(agent)
        session = self.session_of(agent)
        threads = []
        for thread in await self.engine.list_threads(
            agent.did, session.id if session is not None else None
        ):
            after = max(0, thread.last_seq - per_thread)
            page = await self.engine.history(agent.did, thread.id, after, per_thread)
            threads.append(await state_thread(thread, names, page.entries))
        if session is not None:
            me = session.agent_by_did(agent.did)
            links = me.graph.links if me is not None else frozenset()
            agents: list[JsonObject] = [
                {
                    "agentName": a.name,
                    "agentDescription": a.graph.description,
                    "agentConnected": a.connected,
                    "agentWaiting": a.waiting,
                    "agentRunning": a.status == "running",
                }
                for a in session.agents.values()
                if a.did != agent.did and (not links or a.name in links)
            ]
            name = me.name if me is not None else agent.name
        else:
            agents = [
                {"agentName": a["name"], "agentDescription": a["description"]}
                for a in (await self.list_agents(agent, True))["agents"]
            ]
            name = agent.name
        return {"agentName": name, "agentDid": agent.did, "agents": agents, "threads": threads}

    async def read_resource(self, agent: HeldAgent, uri: str) -> tuple[str, str]:
        """The text and MIME type of ``coral://state`` or ``coral://instruction``."""
        if self.scopes is not None:
            await self.scopes.wait_for_blocking(agent.did)
        if uri == INSTRUCTION_URI:
            return INSTRUCTION, "text/markdown"
        if uri != STATE_URI:
            raise NotFound(f"unknown resource {uri}", reason="unknown_resource")
        state = await self.state(agent)
        now = int(time.time() * 1000)
        text = (
            f"# General\nYou are an agent named {state['agentName']}. The current UNIX time is"
            f" {now} (ISO-8601: {iso(now)}).\n"
        )
        if state["agents"]:
            text += (
                f"\n# Agents\nYou can work with {len(state['agents'])} other agents:\n"
                f"```json\n{json.dumps(state['agents'], indent=1)}\n```\n"
            )
        if state["threads"]:
            text += (
                "\n# Threads and messages\nYour threads and their messages:\n"
                f"```json\n{json.dumps(state['threads'], indent=1)}\n```\n"
            )
        return text, "text/markdown"
