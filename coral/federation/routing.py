"""Where a message goes, decided from the replicated directory alone.

An agent lives on its home node. A thread spanning nodes is owned by the home
node of the agent that created it: the owner orders the thread's log and fans
each message out once per participating node, which then delivers locally.
Receivers drop duplicates by message id, so retries and fan-out overlaps are
harmless.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from coral.federation.peer_record import PeerRecord
from coral.protocol.agent import AgentRecord


class RouteKind(StrEnum):
    """Where a recipient lives, as far as this node knows."""

    LOCAL = "local"
    REMOTE = "remote"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Route:
    """A routing decision; ``node`` and ``address`` are set only for REMOTE."""

    kind: RouteKind
    node: str | None = None
    address: str | None = None
    reason: str = ""


def route(
    recipient: str,
    directory: Mapping[str, AgentRecord],
    peers: Mapping[str, PeerRecord],
    self_did: str,
) -> Route:
    """Route to a recipient agent: local, remote (its home node's gRPC address) or unknown."""
    entry = directory.get(recipient)
    if entry is None:
        return Route(RouteKind.UNKNOWN, reason="agent_not_in_directory")
    if entry.deleted:
        return Route(RouteKind.UNKNOWN, reason="agent_deleted")
    if entry.home_node == self_did:
        return Route(RouteKind.LOCAL, node=self_did)
    peer = peers.get(entry.home_node)
    if peer is None or peer.addresses.grpc is None:
        return Route(RouteKind.UNKNOWN, node=entry.home_node, reason="home_node_unreachable")
    return Route(RouteKind.REMOTE, node=entry.home_node, address=peer.addresses.grpc)


def thread_owner(creator: str, directory: Mapping[str, AgentRecord]) -> str | None:
    """The node that orders a thread's log: its creator's home node (None if unknown)."""
    entry = directory.get(creator)
    if entry is None or entry.deleted:
        return None
    return entry.home_node


def fanout_targets(
    participants: Iterable[str], directory: Mapping[str, AgentRecord], self_did: str
) -> dict[str, list[str]]:
    """Group a thread's remote participants by home node: one delivery per node.

    Participants on this node and participants missing from the directory
    (or deleted) are left out; each node's list is sorted and duplicate-free.
    """
    targets: dict[str, set[str]] = {}
    for agent in participants:
        entry = directory.get(agent)
        if entry is None or entry.deleted or entry.home_node == self_did:
            continue
        targets.setdefault(entry.home_node, set()).add(agent)
    return {node: sorted(agents) for node, agents in sorted(targets.items())}


class SeenMessages:
    """Message ids seen within a time window, with a hard cap on how many are kept.

    ``first_sighting`` is True exactly once per id while the id is remembered.
    Ids are forgotten ``window_ms`` after first sight, or oldest-first when over
    ``max_ids``; the replay guard's age bound refuses anything older anyway.
    """

    def __init__(self, window_ms: int = 15 * 60 * 1000, max_ids: int = 1_000_000) -> None:
        self.window_ms = window_ms
        self.max_ids = max_ids
        self._seen: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._seen

    def first_sighting(self, message_id: str, now_ms: int) -> bool:
        """Record ``message_id``; True if it was not seen within the window."""
        self._forget(now_ms)
        if message_id in self._seen:
            return False
        forget_at = now_ms + self.window_ms
        self._seen[message_id] = forget_at
        heapq.heappush(self._expiry, (forget_at, message_id))
        while len(self._seen) > self.max_ids:
            _, oldest = heapq.heappop(self._expiry)
            self._seen.pop(oldest, None)
        return True

    def _forget(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] <= now_ms:
            _, message_id = heapq.heappop(self._expiry)
            self._seen.pop(message_id, None)
