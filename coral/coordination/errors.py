"""Typed coordination errors, each with a stable ``reason`` for the adapters."""

from __future__ import annotations

from coral.protocol.errors import (
    Conflict,
    CoralError,
    Forbidden,
    InvalidMessage,
    NotFound,
    ResourceExhausted,
)


class ThreadNotFound(NotFound):
    """No thread has this id."""

    reason = "thread_not_found"


class AgentNotFound(NotFound):
    """The agent named is not a participant of the thread."""

    reason = "agent_not_found"


class NotParticipant(Forbidden):
    """Only participants may read, post to or change a thread."""

    reason = "not_participant"


class OutOfTurn(Forbidden):
    """The thread's strategy does not let this agent speak now."""

    reason = "out_of_turn"


class MentionNotParticipant(InvalidMessage):
    """A message mentions an agent that is not in the thread."""

    reason = "mention_not_participant"


class MentionSelf(InvalidMessage):
    """A message mentions its own sender."""

    reason = "mention_self"


class ThreadRequired(InvalidMessage):
    """A message posted for coordination must name its thread."""

    reason = "thread_required"


class InvalidThread(InvalidMessage):
    """A thread's name, participants or summary break the rules."""

    reason = "invalid_thread"


class UnknownStrategy(InvalidMessage):
    """No coordination strategy is registered under this name."""

    reason = "unknown_strategy"


class InvalidStrategyOptions(InvalidMessage):
    """The strategy refused the options it was given."""

    reason = "invalid_strategy_options"


class InvalidWait(InvalidMessage):
    """A wait request has a bad kind, cursor or timeout."""

    reason = "invalid_wait"


class ThreadClosed(Conflict):
    """The thread is closed; nothing more may be posted or changed."""

    reason = "thread_closed"


class ThreadExists(Conflict):
    """A thread with this id already exists."""

    reason = "thread_exists"


class AlreadyParticipant(Conflict):
    """The agent is already a participant of the thread."""

    reason = "already_participant"


class DuplicateMessage(Conflict):
    """A message with this id is already stored."""

    reason = "duplicate_message"


class ConcurrentUpdate(Conflict):
    """The thread changed between reading and writing it; retry the operation."""

    reason = "concurrent_update"


class TooManyWaits(ResourceExhausted):
    """The agent already has as many concurrent waits as the node allows."""

    reason = "too_many_waits"


class WaitBudgetExhausted(CoralError):
    """The node holds as many open waits and streams as its budget allows; retry soon."""

    reason = "node_busy"
    category = "unavailable"
    retry_after_s = 1
