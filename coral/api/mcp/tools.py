"""coral-server's MCP tools over the Coral coordination engine.

Agents are named, not addressed by did, exactly as in coral-server: names are
mapped to dids through the directory both ways. Every write is a message
signed with the calling agent's node-held key and passed through the gateway.
Tool names, parameters and result shapes follow coral-server 1.x
(``coral_*``) and its v0 unprefixed predecessors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from coral.agents.directory import AgentDirectory
from coral.api.mcp.held_agents import HeldAgent, HeldAgents
from coral.coordination.model import Thread, ThreadEntry, WaitKind
from coral.coordination.service import MAX_WAIT_MS, CoordinationService
from coral.protocol.errors import CoralError, InvalidMessage, NotFound

MESSAGE_RECEIVED = "Message received"
TIMEOUT_REACHED = "Timeout reached"
#: Unix times below this are seconds, not milliseconds (year 5138 in seconds).
_SECONDS_LIMIT = 100_000_000_000

JsonObject = dict[str, Any]


class ToolArgumentError(InvalidMessage):
    """A tool was called with a missing or mistyped argument."""

    reason = "invalid_tool_arguments"


class UnknownTool(NotFound):
    """No tool by that name."""

    reason = "unknown_tool"


def _schema(properties: dict[str, JsonObject], required: list[str]) -> JsonObject:
    return {"type": "object", "properties": properties, "required": required}


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_WAIT_TIME = {"type": "integer", "description": "Unix time in ms; only newer messages count"}
_MAX_WAIT = {"type": "integer", "minimum": 1, "maximum": MAX_WAIT_MS}

#: name -> (description, input schema)
TOOL_SPECS: dict[str, tuple[str, JsonObject]] = {
    "coral_create_thread": (
        "Create a thread with other agents (by name); you are included automatically.",
        _schema(
            {"threadName": _STR, "participantNames": _NAMES}, ["threadName", "participantNames"]
        ),
    ),
    "coral_close_thread": (
        "Close a thread with a summary of its conclusion.",
        _schema({"threadId": _STR, "summary": _STR}, ["threadId", "summary"]),
    ),
    "coral_add_participant": (
        "Add an agent to a thread you participate in; it sees the whole history.",
        _schema({"threadId": _STR, "participantName": _STR}, ["threadId", "participantName"]),
    ),
    "coral_remove_participant": (
        "Remove an agent from a thread you participate in.",
        _schema({"threadId": _STR, "participantName": _STR}, ["threadId", "participantName"]),
    ),
    "coral_send_message": (
        "Post a message to a thread, mentioning participants (by name) who should act on it.",
        _schema({"threadId": _STR, "content": _STR, "mentions": _NAMES}, ["threadId", "content"]),
    ),
    "coral_wait_for_message": (
        "Wait for the next message sent to you in any thread.",
        _schema(
            {"currentUnixTime": _WAIT_TIME, "maxWaitMs": _MAX_WAIT},
            ["currentUnixTime", "maxWaitMs"],
        ),
    ),
    "coral_wait_for_mention": (
        "Wait for the next message that mentions you.",
        _schema(
            {"currentUnixTime": _WAIT_TIME, "maxWaitMs": _MAX_WAIT},
            ["currentUnixTime", "maxWaitMs"],
        ),
    ),
    "coral_wait_for_agent": (
        "Wait for the next message from one agent (by name).",
        _schema(
            {"currentUnixTime": _WAIT_TIME, "agentName": _STR, "maxWaitMs": _MAX_WAIT},
            ["currentUnixTime", "agentName", "maxWaitMs"],
        ),
    ),
    # coral-server v0 names, kept for agents written against the paper-era server.
    "list_agents": (
        "List all registered agents in your contact.",
        _schema({"includeDetails": {"type": "boolean"}}, []),
    ),
    "create_thread": (
        "Create a thread with other agents (by name).",
        _schema({"threadName": _STR, "participantIds": _NAMES}, ["threadName", "participantIds"]),
    ),
    "add_participant": (
        "Add an agent to a thread.",
        _schema({"threadId": _STR, "participantId": _STR}, ["threadId", "participantId"]),
    ),
    "remove_participant": (
        "Remove an agent from a thread.",
        _schema({"threadId": _STR, "participantId": _STR}, ["threadId", "participantId"]),
    ),
    "close_thread": (
        "Close a thread with a summary.",
        _schema({"threadId": _STR, "summary": _STR}, ["threadId", "summary"]),
    ),
    "send_message": (
        "Send a message to a thread, mentioning agents by name.",
        _schema({"threadId": _STR, "content": _STR, "mentions": _NAMES}, ["threadId", "content"]),
    ),
    "wait_for_mentions": (
        "Block until messages mention you; you will see all unread mentions.",
        _schema({"timeoutMs": _MAX_WAIT}, []),
    ),
}

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def _receipt(result: object) -> JsonObject:
    return dict(result) if isinstance(result, dict) else {"result": str(result)}


def check_arguments(tool: str, args: JsonObject) -> None:
    """Raise ToolArgumentError unless ``args`` fits the tool's schema."""
    schema = TOOL_SPECS[tool][1]
    for key in schema["required"]:
        if key not in args:
            raise ToolArgumentError(f"{tool}: missing required argument {key!r}")
    for key, value in args.items():
        spec = schema["properties"].get(key)
        if spec is None:
            raise ToolArgumentError(f"{tool}: unknown argument {key!r}")
        if not _TYPE_CHECKS[spec["type"]](value):
            raise ToolArgumentError(f"{tool}: argument {key!r} must be a {spec['type']}")
        if spec["type"] == "integer" and not spec.get("minimum", value) <= value <= spec.get(
            "maximum", value
        ):
            raise ToolArgumentError(
                f"{tool}: {key!r} must be in [{spec['minimum']}, {spec['maximum']}]"
            )


class CoralTools:
    """Runs the MCP tools for one node; the calling agent is passed to each call."""

    def __init__(
        self, held: HeldAgents, directory: AgentDirectory, engine: CoordinationService
    ) -> None:
        self.held = held
        self.directory = directory
        self.engine = engine
        self._names: dict[str, str] = {}
        # Per (agent, wait kind, from) inbox cursor: a wait never returns a message twice.
        self._cursors: dict[tuple[str, str, str | None], int] = {}
        self._handlers: dict[str, Callable[[HeldAgent, JsonObject], Awaitable[JsonObject]]] = {
            "coral_create_thread": lambda a, x: self.create_thread(
                a, x["threadName"], x["participantNames"]
            ),
            "create_thread": lambda a, x: self.create_thread(
                a, x["threadName"], x["participantIds"]
            ),
            "coral_close_thread": lambda a, x: self.close_thread(a, x["threadId"], x["summary"]),
            "close_thread": lambda a, x: self.close_thread(a, x["threadId"], x["summary"]),
            "coral_add_participant": lambda a, x: self.membership(
                a, "thread.add_participant", x["threadId"], x["participantName"]
            ),
            "add_participant": lambda a, x: self.membership(
                a, "thread.add_participant", x["threadId"], x["participantId"]
            ),
            "coral_remove_participant": lambda a, x: self.membership(
                a, "thread.remove_participant", x["threadId"], x["participantName"]
            ),
            "remove_participant": lambda a, x: self.membership(
                a, "thread.remove_participant", x["threadId"], x["participantId"]
            ),
            "coral_send_message": lambda a, x: self.send_message(
                a, x["threadId"], x["content"], x.get("mentions", [])
            ),
            "send_message": lambda a, x: self.send_message(
                a, x["threadId"], x["content"], x.get("mentions", [])
            ),
            "coral_wait_for_message": lambda a, x: self.wait_one(
                a, "message", None, x["currentUnixTime"], x["maxWaitMs"]
            ),
            "coral_wait_for_mention": lambda a, x: self.wait_one(
                a, "mention", None, x["currentUnixTime"], x["maxWaitMs"]
            ),
            "coral_wait_for_agent": lambda a, x: self.wait_for_agent(
                a, x["agentName"], x["currentUnixTime"], x["maxWaitMs"]
            ),
            "list_agents": lambda a, x: self.list_agents(x.get("includeDetails", True)),
            "wait_for_mentions": lambda a, x: self.wait_for_mentions(a, x.get("timeoutMs", 30_000)),
        }

    async def call(self, agent: HeldAgent, tool: str, args: JsonObject) -> JsonObject:
        """Run one tool as ``agent``; typed CoralErrors describe every refusal."""
        if tool not in self._handlers:
            raise UnknownTool(f"no tool named {tool!r}")
        check_arguments(tool, args)
        return await self._handlers[tool](agent, args)

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

    async def did_of(self, name: str) -> str:
        """The did of the agent called ``name``; NotFound when none is."""
        return await self.directory.resolve_did(name)

    async def thread_view(self, thread: Thread) -> JsonObject:
        """A thread as coral-server shows it (names, not dids)."""
        return {
            "id": thread.id,
            "name": thread.name,
            "creatorName": await self.name_of(thread.creator),
            "participants": [await self.name_of(p) for p in thread.participants],
            "state": thread.state,
            "summary": thread.summary,
            "timestamp": thread.created_at,
        }

    async def message_view(self, entry: ThreadEntry) -> JsonObject:
        """A thread message as coral-server's SessionThreadMessage."""
        message = entry.message
        return {
            "id": message.id,
            "threadId": entry.thread_id,
            "text": message.text() or (json.dumps(message.data()) if message.data() else ""),
            "senderName": await self.name_of(message.sender),
            "mentionNames": [await self.name_of(m) for m in message.mentions],
            "timestamp": entry.recorded_at,
        }

    # -- writes ---------------------------------------------------------------

    async def create_thread(self, agent: HeldAgent, name: str, names: list[str]) -> JsonObject:
        """Create a thread; the caller is its creator and first participant."""
        participants = [await self.did_of(n) for n in names if n != agent.name]
        result = await self.held.submit(
            agent, kind="thread.create", data={"name": name, "participants": participants}
        )
        return await self._thread_result(result)

    async def close_thread(self, agent: HeldAgent, thread_id: str, summary: str) -> JsonObject:
        """Close a thread with its summary."""
        result = await self.held.submit(
            agent, kind="thread.close", thread=thread_id, data={"summary": summary}
        )
        return await self._thread_result(result)

    async def membership(
        self, agent: HeldAgent, kind: str, thread_id: str, name: str
    ) -> JsonObject:
        """Add or remove a participant (by name)."""
        did = await self.did_of(name)
        result = await self.held.submit(agent, kind=kind, thread=thread_id, data={"agent": did})
        return await self._thread_result(result)

    async def send_message(
        self, agent: HeldAgent, thread_id: str, content: str, mentions: list[str]
    ) -> JsonObject:
        """Post ``content`` to a thread, mentioning participants by name."""
        dids = [await self.did_of(n) for n in mentions]
        result = await self.held.submit(agent, thread=thread_id, text=content, mentions=dids)
        if not isinstance(result, ThreadEntry):  # queued for the node that owns the thread
            return {"status": "Message forwarded", "receipt": _receipt(result)}
        return {"status": "Message sent", "message": await self.message_view(result)}

    async def _thread_result(self, result: object) -> JsonObject:
        if isinstance(result, Thread):
            return await self.thread_view(result)
        return {"status": "Message forwarded", "receipt": _receipt(result)}

    # -- reads ----------------------------------------------------------------

    async def list_agents(self, details: bool) -> JsonObject:
        """Every live agent this node knows."""
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

    async def wait_for_agent(
        self, agent: HeldAgent, name: str, since: int, max_wait_ms: int
    ) -> JsonObject:
        """Wait for the next message from the agent called ``name``."""
        return await self.wait_one(agent, "agent", await self.did_of(name), since, max_wait_ms)

    async def wait_one(
        self, agent: HeldAgent, kind: WaitKind, from_did: str | None, since: int, max_wait_ms: int
    ) -> JsonObject:
        """The first new matching message recorded at or after ``since``, or a timeout."""
        since_ms = since * 1000 if 0 <= since < _SECONDS_LIMIT else since
        key = (agent.did, kind, from_did)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000
        while (remaining := int((deadline - loop.time()) * 1000)) > 0:
            result = await self.engine.wait(
                agent.did,
                kind,
                from_agent=from_did,
                after=self._cursors.get(key, 0),
                timeout_ms=remaining,
                limit=1,
            )
            if result.timed_out:
                break
            item = result.entries[0]
            self._cursors[key] = item.cursor
            entry = item.entry
            if entry.system or entry.sender == agent.did or entry.recorded_at < since_ms:
                continue
            return {"message": await self.message_view(entry), "status": MESSAGE_RECEIVED}
        return {"status": TIMEOUT_REACHED}

    async def wait_for_mentions(self, agent: HeldAgent, timeout_ms: int) -> JsonObject:
        """v0 semantics: block until mentioned, then return every unread mention."""
        key = (agent.did, "legacy-mention", None)
        result = await self.engine.wait(
            agent.did, "mention", after=self._cursors.get(key, 0), timeout_ms=timeout_ms
        )
        self._cursors[key] = result.cursor
        messages = [await self.message_view(i.entry) for i in result.entries if not i.entry.system]
        return {"messages": messages, "status": MESSAGE_RECEIVED if messages else TIMEOUT_REACHED}

    async def state(self, agent: HeldAgent, per_thread: int = 50) -> JsonObject:
        """The ``coral://state`` resource: the agent, its contacts and its threads."""
        threads = []
        for thread in await self.engine.list_threads(agent.did):
            view = await self.thread_view(thread)
            after = max(0, thread.last_seq - per_thread)
            page = await self.engine.history(agent.did, thread.id, after, per_thread)
            view["messages"] = [
                {
                    "messageText": e.message.text(),
                    "sendingAgentName": await self.name_of(e.sender),
                    "messageTimestamp": e.recorded_at,
                    "mentionAgentNames": [await self.name_of(m) for m in e.message.mentions],
                }
                for e in page.entries
                if not e.system
            ]
            threads.append(view)
        agents = (await self.list_agents(True))["agents"]
        return {
            "agentName": agent.name,
            "agentDid": agent.did,
            "agents": agents,
            "threads": threads,
        }


INSTRUCTION = """You are an agent in a Coral session. Other agents are reachable by name.
Use coral_create_thread to start a thread with the agents you need, coral_send_message to
post (mention the agents who should act), and coral_wait_for_mention to receive work
addressed to you (pass the current Unix time in ms and maxWaitMs <= 60000). Read
coral://state for the agents you can talk to and the threads you are in.
"""
