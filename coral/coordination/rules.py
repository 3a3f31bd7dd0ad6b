"""The thread rules, as pure functions over ``Thread`` values.

They follow coral-server: only participants read, post and change a thread;
mentions name participants other than the sender; a closed thread accepts
nothing more. Each function returns a new ``Thread`` or raises a typed error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from coral.coordination.errors import (
    AgentNotFound,
    AlreadyParticipant,
    InvalidThread,
    MentionNotParticipant,
    MentionSelf,
    NotParticipant,
    ThreadClosed,
    ThreadRequired,
)
from coral.coordination.model import JsonObject, Thread
from coral.protocol.message import Message

DID_KEY = re.compile(r"^did:key:z[1-9A-HJ-NP-Za-km-z]+$")
THREAD_ID = re.compile(r"^[A-Za-z0-9._:~-]{1,128}$")
MAX_NAME_CHARS = 256
MAX_SUMMARY_CHARS = 64 * 1024
MAX_PARTICIPANTS = 256


def check_agent_id(agent: str) -> None:
    """Raise InvalidThread unless ``agent`` looks like a did:key."""
    if len(agent) > 128 or not DID_KEY.match(agent):
        raise InvalidThread(f"{agent!r} is not a did:key agent id")


def new_thread(
    *,
    thread_id: str,
    name: str,
    creator: str,
    participants: Iterable[str],
    strategy: str,
    strategy_options: JsonObject,
    created_at: int,
    session_id: str | None = None,
) -> Thread:
    """Build a new open thread; the creator is always its first participant."""
    if not THREAD_ID.match(thread_id):
        raise InvalidThread(f"bad thread id {thread_id!r}")
    if session_id is not None and not THREAD_ID.match(session_id):
        raise InvalidThread(f"bad session id {session_id!r}")
    if not name.strip() or len(name) > MAX_NAME_CHARS:
        raise InvalidThread(f"a thread name has 1 to {MAX_NAME_CHARS} characters")
    check_agent_id(creator)
    members = [creator]
    for agent in participants:
        check_agent_id(agent)
        if agent not in members:
            members.append(agent)
    if len(members) > MAX_PARTICIPANTS:
        raise InvalidThread(f"a thread has at most {MAX_PARTICIPANTS} participants")
    return Thread(
        id=thread_id,
        name=name,
        creator=creator,
        participants=tuple(members),
        strategy=strategy,
        strategy_options=strategy_options,
        created_at=created_at,
        session_id=session_id,
    )


def require_participant(thread: Thread, agent: str) -> None:
    """Raise NotParticipant unless ``agent`` is in the thread."""
    if not thread.has_participant(agent):
        raise NotParticipant(f"{agent} is not a participant of thread {thread.id}")


def require_open(thread: Thread) -> None:
    """Raise ThreadClosed when the thread is closed."""
    if not thread.is_open:
        raise ThreadClosed(f"thread {thread.id} is closed")


def check_post(thread: Thread, message: Message) -> None:
    """Raise unless ``message`` may be appended to ``thread`` by its sender."""
    if message.thread is None:
        raise ThreadRequired("a thread message must name its thread")
    require_participant(thread, message.sender)
    require_open(thread)
    for mentioned in message.mentions:
        if mentioned == message.sender:
            raise MentionSelf("a message cannot mention its own sender")
        if not thread.has_participant(mentioned):
            raise MentionNotParticipant(f"{mentioned} is not a participant of thread {thread.id}")


def with_participant_added(thread: Thread, requester: str, agent: str) -> Thread:
    """The thread with ``agent`` joined, if ``requester`` may add it."""
    require_participant(thread, requester)
    require_open(thread)
    check_agent_id(agent)
    if thread.has_participant(agent):
        raise AlreadyParticipant(f"{agent} is already in thread {thread.id}")
    if len(thread.participants) >= MAX_PARTICIPANTS:
        raise InvalidThread(f"a thread has at most {MAX_PARTICIPANTS} participants")
    return dataclasses.replace(thread, participants=(*thread.participants, agent))


def with_participant_removed(thread: Thread, requester: str, agent: str) -> Thread:
    """The thread without ``agent``, if ``requester`` (a participant) may remove it."""
    require_participant(thread, requester)
    require_open(thread)
    if not thread.has_participant(agent):
        raise AgentNotFound(f"{agent} is not a participant of thread {thread.id}")
    remaining = tuple(p for p in thread.participants if p != agent)
    return dataclasses.replace(thread, participants=remaining)


def closed(
    thread: Thread, requester: str, summary: str, now_ms: int, *, by_node: bool = False
) -> Thread:
    """The thread closed with ``summary`` (its conclusion) by a participant.

    ``by_node`` is the operator's close: no participant is needed.
    """
    if not by_node:
        require_participant(thread, requester)
    require_open(thread)
    if len(summary) > MAX_SUMMARY_CHARS:
        raise InvalidThread(f"a summary has at most {MAX_SUMMARY_CHARS} characters")
    return dataclasses.replace(thread, state="closed", summary=summary, closed_at=now_ms)
