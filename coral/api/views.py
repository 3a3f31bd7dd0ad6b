"""JSON views of domain objects, shared by the HTTP, MCP and A2A adapters."""

from __future__ import annotations

from typing import Any

from coral.coordination.model import HistoryPage, InboxEntry, Thread, ThreadEntry, WaitResult
from coral.coordination.views import entry_json, thread_json


def thread_view(thread: Thread) -> dict[str, Any]:
    return thread_json(thread)


def entry_view(entry: ThreadEntry) -> dict[str, Any]:
    return entry_json(entry)


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
