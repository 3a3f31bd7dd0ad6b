"""The JSON an owner node sends its mirrors: a thread and its entries.

The same JSON as the HTTP API's thread and entry views: both are built by
``coral.coordination.views``, so the federation wire never depends on an adapter.
"""

from __future__ import annotations

from typing import Any

from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.views import entry_json, thread_json


def thread_to_wire(thread: Thread) -> dict[str, Any]:
    """A thread as the ``thread`` field of an ``entries`` envelope."""
    return thread_json(thread)


def entry_to_wire(entry: ThreadEntry, recipients: list[str]) -> dict[str, Any]:
    """A log entry with the receiver's agents whose inbox gets it."""
    return {**entry_json(entry), "recipients": recipients}


def thread_from_wire(view: dict[str, Any]) -> Thread:
    """Rebuild a Thread from what its owner sent."""
    return Thread(
        id=view["id"],
        name=view["name"],
        creator=view["creator"],
        participants=tuple(view["participants"]),
        strategy=view["strategy"],
        created_at=int(view["created_at"]),
        session_id=view.get("session_id"),
        state=view["state"],
        summary=view.get("summary"),
        closed_at=view.get("closed_at"),
        strategy_options=view.get("strategy_options") or {},
        strategy_state=view.get("strategy_state") or {},
        last_seq=int(view["last_seq"]),
    )
