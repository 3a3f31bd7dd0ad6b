"""Node-authored system events, stored in the log as ordinary messages.

An event is a ``Message`` whose sender is the node, whose kind is
``coral.<name>`` and whose single data part is ``{"event": name, ...data}``.
Storing events as messages keeps one entry format for history and inboxes,
and lets the node sign them with the same code path as any message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coral.coordination.strategy import SystemEvent
from coral.protocol.message import DataPart, Message, new_message_id

EVENT_KIND_PREFIX = "coral."
#: Names of the events the service itself records.
THREAD_CREATED = "thread_created"
PARTICIPANT_ADDED = "participant_added"
PARTICIPANT_REMOVED = "participant_removed"
THREAD_CLOSED = "thread_closed"
TURN = "turn"

#: Turns an unsigned node event into the message to store (e.g. signs it).
EventSigner = Callable[[Message], Message]


def event_message(
    node_id: str, thread_id: str, event: SystemEvent, now_ms: int, sign: EventSigner | None
) -> Message:
    """The message that records ``event`` in ``thread_id``, authored by ``node_id``."""
    message = Message(
        id=new_message_id(now_ms),
        kind=EVENT_KIND_PREFIX + event.name,
        sender=node_id,
        thread=thread_id,
        mentions=event.mentions,
        created_at=now_ms,
        parts=(DataPart(data={**event.data, "event": event.name}),),
    )
    return sign(message) if sign is not None else message


def event_name(message: Message) -> str | None:
    """The event name of a node event message, or None for an agent message."""
    if not message.kind.startswith(EVENT_KIND_PREFIX):
        return None
    return message.kind[len(EVENT_KIND_PREFIX) :]


def event_data(message: Message) -> dict[str, Any]:
    """The data of a node event message (empty when it carries none)."""
    for payload in message.data():
        if isinstance(payload, dict) and "event" in payload:
            return payload
    return {}
