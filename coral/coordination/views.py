"""The JSON form of a thread and of a log entry: one shape for the API and the federation wire."""

from __future__ import annotations

from typing import Any

from coral.coordination.model import Thread, ThreadEntry
from coral.protocol.message import to_wire


def thread_json(thread: Thread) -> dict[str, Any]:
    """A thread as plain JSON (the API's thread view, the wire's ``thread`` field)."""
    return {
        "id": thread.id,
        "name": thread.name,
        "creator": thread.creator,
        "participants": list(thread.participants),
        "strategy": thread.strategy,
        "strategy_options": dict(thread.strategy_options),
        "strategy_state": dict(thread.strategy_state),
        "session_id": thread.session_id,
        "state": thread.state,
        "summary": thread.summary,
        "created_at": thread.created_at,
        "closed_at": thread.closed_at,
        "last_seq": thread.last_seq,
    }


def entry_json(entry: ThreadEntry) -> dict[str, Any]:
    """A log entry as plain JSON, its message in wire form."""
    return {
        "thread_id": entry.thread_id,
        "seq": entry.seq,
        "system": entry.system,
        "recorded_at": entry.recorded_at,
        "message": to_wire(entry.message),
    }
