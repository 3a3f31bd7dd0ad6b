"""Signed messages as commands: how a verified message drives the engine.

Every write an agent makes is a signed message, so every write is
authenticated, replay-protected and auditable the same way. Thread
operations are messages of these kinds, with their arguments in one data
part; every other kind is posted to the message's thread:

- ``thread.create``: ``{"name", "participants": [did|name], "strategy"?,
  "strategy_options"?, "session_id"?}``; the thread id is ``message.thread``
  when given, else the message id.
- ``thread.add_participant`` / ``thread.remove_participant``: ``{"agent"}``
- ``thread.close``: ``{"summary"}``
"""

from __future__ import annotations

from typing import Any, Protocol

from coral.coordination.events import EVENT_KIND_PREFIX
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.service import CoordinationService
from coral.protocol.errors import Forbidden, InvalidMessage
from coral.protocol.message import Message

CREATE = "thread.create"
ADD = "thread.add_participant"
REMOVE = "thread.remove_participant"
CLOSE = "thread.close"
COMMAND_KINDS = (CREATE, ADD, REMOVE, CLOSE)


class AgentResolver(Protocol):
    """What commands need from the directory."""

    async def is_registered(self, did: str) -> bool:
        """True when the agent has a live record."""
        ...

    async def resolve_did(self, ref: str) -> str:
        """The did of an agent given by did or name; raises when unknown."""
        ...


def _arguments(message: Message) -> dict[str, Any]:
    payloads = [d for d in message.data() if isinstance(d, dict)]
    if len(payloads) != 1:
        raise InvalidMessage(
            f"{message.kind} carries its arguments in exactly one JSON object data part",
            reason="invalid_command",
        )
    return payloads[0]


def _string(args: dict[str, Any], key: str, kind: str, *, max_len: int = 4096) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidMessage(f"{kind} needs a non-empty string {key!r}", reason="invalid_command")
    return value


def _thread_id(message: Message) -> str:
    if not message.thread:
        raise InvalidMessage(f"{message.kind} needs the message's thread", reason="thread_required")
    return message.thread


async def apply_command(
    message: Message, engine: CoordinationService, agents: AgentResolver
) -> Thread | ThreadEntry:
    """Apply one verified message; returns the thread (operations) or the log entry (posts).

    The sender must be a registered agent; node event kinds are reserved.
    """
    if message.kind.startswith(EVENT_KIND_PREFIX):
        raise Forbidden(
            "message kinds starting with 'coral.' are reserved for nodes", reason="reserved_kind"
        )
    if not await agents.is_registered(message.sender):
        raise Forbidden(
            f"sender {message.sender} is not a registered agent", reason="agent_not_registered"
        )
    kind = message.kind
    if kind == CREATE:
        args = _arguments(message)
        names = args.get("participants", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidMessage(
                "participants is a list of agent dids or names", reason="invalid_command"
            )
        participants = [await agents.resolve_did(n) for n in names]
        options = args.get("strategy_options") or {}
        if not isinstance(options, dict):
            raise InvalidMessage("strategy_options is an object", reason="invalid_command")
        session = args.get("session_id")
        return await engine.create_thread(
            message.sender,
            _string(args, "name", kind, max_len=256),
            participants,
            strategy=str(args.get("strategy") or "broadcast"),
            strategy_options=options,
            session_id=session if isinstance(session, str) else None,
            thread_id=message.thread or message.id,
        )
    if kind in (ADD, REMOVE):
        args = _arguments(message)
        agent = await agents.resolve_did(_string(args, "agent", kind))
        if kind == ADD:
            return await engine.add_participant(message.sender, _thread_id(message), agent)
        return await engine.remove_participant(message.sender, _thread_id(message), agent)
    if kind == CLOSE:
        args = _arguments(message)
        summary = args.get("summary", "")
        if not isinstance(summary, str):
            raise InvalidMessage("summary is a string", reason="invalid_command")
        return await engine.close_thread(message.sender, _thread_id(message), summary)
    return await engine.send_message(message)
