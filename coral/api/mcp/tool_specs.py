"""The MCP tools' names, descriptions and input schemas (coral-server 1.2 and v0), and checks.

Schemas list every property as required, as coral-server's do (OpenAI's tool
calling refuses ``uniqueItems`` and optional properties); the one extension is
``afterCursor`` on the wait tools, which is optional so old clients never see a
difference: a client that passes back the ``cursor`` of its last wait result
can re-issue a dropped request and lose nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coral.protocol.errors import InvalidMessage, NotFound

JsonObject = dict[str, Any]

CLOSE_SESSION_TOOL = "coral_close_session"


class ToolArgumentError(InvalidMessage):
    """A tool was called with a missing or mistyped argument."""

    reason = "invalid_tool_arguments"


class UnknownTool(NotFound):
    """No tool by that name."""

    reason = "unknown_tool"


def _schema(properties: dict[str, JsonObject], required: list[str]) -> JsonObject:
    return {"type": "object", "properties": properties, "required": required}


_STR = {"type": "string"}
_NAMES = {"type": "array", "items": {"type": "string"}}
_WAIT_TIME = {
    "type": "integer",
    "description": "The current Unix time in milliseconds; older messages are not returned",
}
_MAX_WAIT = {"type": "integer", "description": "Longest wait in ms (at most 60000)"}
_CURSOR = {
    "type": "integer",
    "description": "Optional: the cursor of your previous wait result, to resume exactly there",
}


def _wait(extra: dict[str, JsonObject], required: list[str]) -> JsonObject:
    properties = {"currentUnixTime": _WAIT_TIME, **extra, "maxWaitMs": _MAX_WAIT}
    properties["afterCursor"] = _CURSOR
    return _schema(properties, ["currentUnixTime", *required, "maxWaitMs"])


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
        _schema(
            {"threadId": _STR, "content": _STR, "mentions": _NAMES},
            ["threadId", "content", "mentions"],
        ),
    ),
    "coral_wait_for_message": (
        "Wait for the next message sent to you in any thread.",
        _wait({}, []),
    ),
    "coral_wait_for_mention": (
        "Wait for the next message that mentions you.",
        _wait({}, []),
    ),
    "coral_wait_for_agent": (
        "Wait for the next message from one agent (by name).",
        _wait({"agentName": _STR}, ["agentName"]),
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
        _schema({"timeoutMs": {"type": "integer"}}, []),
    ),
}

#: Only for agents given coral-server's ``close_session_tool`` plugin.
CLOSE_SESSION_SPEC: tuple[str, JsonObject] = (
    "Close the whole session, stopping every agent in it.",
    _schema({"reason": _STR}, ["reason"]),
)

#: Arguments coral-server gives defaults to; a client may leave them out.
DEFAULTED = {"currentUnixTime", "maxWaitMs", "mentions"}

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def spec_of(tool: str) -> tuple[str, JsonObject]:
    """The description and schema of ``tool``; UnknownTool otherwise."""
    if tool == CLOSE_SESSION_TOOL:
        return CLOSE_SESSION_SPEC
    if tool not in TOOL_SPECS:
        raise UnknownTool(f"no tool named {tool!r}")
    return TOOL_SPECS[tool]


def check_arguments(tool: str, args: JsonObject) -> None:
    """Raise ToolArgumentError unless ``args`` fits the tool's schema."""
    schema = spec_of(tool)[1]
    for key in schema["required"]:
        if key not in args and key not in DEFAULTED:
            raise ToolArgumentError(f"{tool}: missing required argument {key!r}")
    for key, value in args.items():
        spec = schema["properties"].get(key)
        if spec is None:
            raise ToolArgumentError(f"{tool}: unknown argument {key!r}")
        if not _TYPE_CHECKS[spec["type"]](value):
            raise ToolArgumentError(f"{tool}: argument {key!r} must be a {spec['type']}")
        if key in ("maxWaitMs", "timeoutMs") and value <= 0:
            raise ToolArgumentError(f"{tool}: {key!r} must be positive")
        if key == "afterCursor" and value < 0:
            raise ToolArgumentError(f"{tool}: 'afterCursor' must be >= 0")


INSTRUCTION = """# Coral

You are one agent of a Coral multi-agent system. Other agents do not see what
you print: to work with them, and with the outside world, use the Coral tools.

# Threads and messages

All messages go into threads. Start a thread about a new subject with
coral_create_thread (name the agents who should take part; you are added
yourself), post with coral_send_message, and close a thread with a short
conclusion (coral_close_thread) once its subject is settled. A closed thread
takes no more messages. Only participants see a thread; add or remove them
with coral_add_participant and coral_remove_participant. A new participant
sees the whole history.

# Mentions

Name the agents you want an answer from in a message's mentions: they are much
more likely to act on it. You cannot mention yourself, nor agents outside the
thread.

# Waiting

Each agent runs its own loop. When your next step depends on others, wait:
coral_wait_for_message (any message to you), coral_wait_for_mention (messages
that mention you) or coral_wait_for_agent (messages from one agent). Pass the
current Unix time in ms as currentUnixTime; a wait lasts at most 60 seconds.
Each result carries a cursor: pass it back as afterCursor to resume exactly
where you left off. Read coral://state for the agents you can reach and your
threads.
"""
