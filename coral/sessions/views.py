"""Threads and messages in coral-server 1.2's JSON shapes (names, ISO-8601 times).

``SessionThread``: ``{id, name, creatorName, participants, messages, state,
timestamp}`` with ``state`` ``{"state": "open"}`` or ``{"state": "closed",
"summary", "timestamp"}``; ``SessionThreadMessage``: ``{id, threadId, text,
senderName, mentionNames, timestamp}``. Agents are shown by name through a
caller-supplied ``Names`` (a session's names, or the directory's).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from coral.coordination.model import Thread, ThreadEntry

Names = Callable[[str], Awaitable[str]]
JsonObject = dict[str, Any]


def iso(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC with a ``Z`` (as kotlinx Instant prints)."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_text(entry: ThreadEntry) -> str:
    """The text of an agent message (data parts as JSON when there is no text)."""
    message = entry.message
    text = message.text()
    if text:
        return text
    data = message.data()
    return json.dumps(data[0] if len(data) == 1 else data) if data else ""


async def message_view(entry: ThreadEntry, names: Names) -> JsonObject:
    """One thread message as coral-server's ``SessionThreadMessage``."""
    message = entry.message
    return {
        "id": message.id,
        "threadId": entry.thread_id,
        "text": message_text(entry),
        "senderName": await names(message.sender),
        "mentionNames": [await names(m) for m in message.mentions],
        "timestamp": iso(entry.recorded_at),
    }


def thread_state(thread: Thread) -> JsonObject:
    """coral-server's ``SessionThreadState``."""
    if thread.is_open:
        return {"state": "open"}
    return {
        "state": "closed",
        "summary": thread.summary or "",
        "timestamp": iso(thread.closed_at or thread.created_at),
    }


async def thread_view(
    thread: Thread, names: Names, entries: Iterable[ThreadEntry] = ()
) -> JsonObject:
    """A thread as coral-server's ``SessionThread`` (agent messages only, in order)."""
    return {
        "id": thread.id,
        "name": thread.name,
        "creatorName": await names(thread.creator),
        "participants": [await names(p) for p in thread.participants],
        "messages": [await message_view(e, names) for e in entries if not e.system],
        "state": thread_state(thread),
        "timestamp": iso(thread.created_at),
    }


async def state_message(entry: ThreadEntry, names: Names) -> JsonObject:
    """A message as ``coral://state`` shows it (no ids)."""
    out: JsonObject = {
        "messageText": message_text(entry),
        "sendingAgentName": await names(entry.sender),
        "messageTimestamp": iso(entry.recorded_at),
    }
    if entry.message.mentions:
        out["mentionAgentNames"] = [await names(m) for m in entry.message.mentions]
    return out


async def state_thread(thread: Thread, names: Names, entries: Iterable[ThreadEntry]) -> JsonObject:
    """A thread as ``coral://state`` shows it."""
    out: JsonObject = {
        "threadId": thread.id,
        "threadName": thread.name,
        "owningAgentName": await names(thread.creator),
        "participatingAgents": [await names(p) for p in thread.participants],
        "state": thread.state,
    }
    if thread.is_open:
        out["messages"] = [await state_message(e, names) for e in entries if not e.system]
    else:
        out["summary"] = thread.summary or ""
    return out
