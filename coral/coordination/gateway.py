"""The one path every inbound agent message takes, whichever API it came by.

Order: freshness -> signature -> in-memory replay window -> persistent seen
ids -> command. Each refusal is a typed error counted by reason; nothing is
written before every check has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from coral.agents.directory import AgentDirectory
from coral.coordination.commands import COMMAND_KINDS, apply_command
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.ports import SeenIds
from coral.coordination.ratelimit import RateLimiter
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentRecord
from coral.protocol.codec import check_limits
from coral.protocol.message import Message
from coral.protocol.verify import MessageVerifier

#: An extra admission check a subsystem adds (e.g. team certificates); it
#: raises a CoralError to refuse the message before anything is written.
AdmissionCheck = Callable[[Message], Awaitable[None]]


class Forwarder(Protocol):
    """What the gateway needs from federation."""

    def owner_of(self, message: Message) -> str | None:
        """The remote node that owns the message's thread, or None."""
        ...

    async def forward(self, message: Message, owner: str) -> dict[str, Any]:
        """Queue the verified message for its owner; a receipt for the sender.

        Raises:
            StorageUnavailable: the outbox could not be written.
        """
        ...


class RegisteredAgents:
    """The directory facts a submit needs, answered from memory after the first look.

    Kept exact by the directory's listeners (every record it stores, local or
    replicated, passes through them); a lookup that raced a store is not cached.
    """

    def __init__(self, directory: AgentDirectory, max_entries: int = 100_000) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self._live: dict[str, bool] = {}
        self._changes = 0
        directory.listeners.append(self._stored)

    def _stored(self, record: AgentRecord) -> None:
        self._changes += 1
        if record.agent in self._live or len(self._live) < self.max_entries:
            self._live[record.agent] = not record.deleted

    async def is_registered(self, did: str) -> bool:
        """True when ``did`` has a live record here.

        Raises:
            StorageUnavailable: the directory store could not be read.
        """
        live = self._live.get(did)
        if live is not None:
            return live
        changes = self._changes
        live = await self.directory.is_registered(did)
        # Only yes is cached from a lookup: unknown senders must not fill the map.
        if live and changes == self._changes and len(self._live) < self.max_entries:
            self._live[did] = live
        return live

    async def resolve_did(self, ref: str) -> str:
        """The did of an agent given by did or name.

        Raises:
            AgentNotRegistered: nothing live answers to ``ref``.
            AmbiguousName: several remote agents carry the unbound name.
        """
        return await self.directory.resolve_did(ref)


class MessageGateway:
    """Verifies and applies agent messages for every front door."""

    def __init__(
        self,
        verifier: MessageVerifier,
        seen: SeenIds,
        engine: CoordinationService,
        directory: AgentDirectory,
        *,
        limiter: RateLimiter | None = None,
        on_routed: Callable[[], object] | None = None,
    ) -> None:
        self.verifier = verifier
        self.seen = seen
        self.engine = engine
        self.directory = directory
        self.agents = RegisteredAgents(directory)
        self._on_routed = on_routed
        self.checks: list[AdmissionCheck] = []
        self.limiter = limiter
        #: Set by federation: forwards messages for threads another node owns.
        self.forwarder: Forwarder | None = None
        #: Pending while the node still wires parts that decide how a message is
        #: routed (the forwarder, admission checks); submits wait for it.
        self.wiring: asyncio.Future[None] | None = None

    async def submit(self, message: Message) -> Thread | ThreadEntry | dict[str, Any]:
        """Verify ``message`` and apply it; returns the thread or the stored entry.

        For a thread another node owns, the verified message is queued for
        that node and a receipt ``{"message_id", "owner", "queued"}`` returned.

        Raises:
            RateLimited: the sender is over its rate limit.
            LimitExceeded: the message breaks a size limit (``TooLarge``,
                ``TooDeep``).
            FreshnessError: ``Expired``, ``FromFuture``, or ``Replayed`` for an
                id seen within the replay window (in memory, or for commands
                in the persistent ``SeenIds``).
            SignatureError: the signature is missing or does not verify.
            Forbidden: a reserved kind, or the sender is not a registered agent.
            InvalidMessage: a malformed command (``invalid_command``).
            AgentNotRegistered: a command names an unknown agent.
            StorageUnavailable: the store could not be read or written.
            CoralError: the node failed to finish starting (while ``wiring``
                was pending), an admission check's refusal (team rules, award
                settlement: ``NotAMember``, ``PendingNotFound``, ...), or any
                refusal of the ``CoordinationService`` operation the message
                maps to (``ThreadNotFound``, ``NotParticipant``, ``OutOfTurn``, ...).

        Once the signature checks pass, the message id counts as seen: after
        any later refusal, or a cancellation, the same signed message is
        refused as ``Replayed`` within the replay window; sign a new one.

        Cancellation: an admission check that already ran keeps its effect (a
        carried team document stays applied, an award payment stays settled);
        for the coordination write see ``CoordinationService``.
        """
        if self.wiring is not None:  # the node is still starting: wait, then route as usual
            await asyncio.shield(self.wiring)
        if self.limiter is not None:
            self.limiter.take(message.sender)
        # Wire decoders check limits on the way in; messages built inside the
        # node (front doors acting for held agents) are checked here too. The
        # byte size is checked by the verifier, on the bytes it signs anyway.
        check_limits(message, self.verifier.limits)
        self.verifier.verify(message)
        forget_at = message.created_at + self.verifier.limits.max_age_ms + 1
        owner = self.forwarder.owner_of(message) if self.forwarder is not None else None
        if owner is not None:
            return await self.forwarder.forward(message, owner)  # type: ignore[union-attr]
        for check in self.checks:
            await check(message)
        if message.kind in COMMAND_KINDS:
            # Posts need no extra row: the thread log's unique message id already
            # refuses a replay, forever. Commands leave no such trace, so their
            # ids are remembered for the replay window.
            await self.seen.remember(message.id, forget_at)
        result = await apply_command(message, self.engine, self.agents)
        if isinstance(result, ThreadEntry) and self._on_routed is not None:
            self._on_routed()
        return result
