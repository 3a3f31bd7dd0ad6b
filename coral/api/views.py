"""JSON views of domain objects, shared by the HTTP, MCP and A2A adapters."""

from __future__ import annotations

from typing import Any

from coral.coordination.model import HistoryPage, InboxEntry, Thread, ThreadEntry, WaitResult
from coral.protocol.message import to_wire


def thread_view(thread: Thread) -> dict[str, Any]:
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


def entry_view(entry: ThreadEntry) -> dict[str, Any]:
    return {
        "thread_id": entry.thread_id,
        "seq": entry.seq,
        "system": entry.system,
        "recorded_at": entry.recorded_at,
        "message": to_wire(entry.message),
    }


def inbox_view(item: InboxEntry) -> dict[str, Any]:
    return {"cursor": item.cursor, "mentioned": item.mentioned, "entry": entry_view(item.entry)}


def wait_view(result: WaitResult) -> dict[str, Any]:
    return {
        "entries": [inbox_view(i) for i in result.entries],
        "cursor": result.cursor,
        "timed_out": result.timed_out,
    }


def history_view(page: HistoryPage) -> dict[str, Any]:
    return {
        "entries": [entry_view(e) for e in page.entries],
        "next_after_seq": page.next_after_seq,
    }
