"""An in-memory ``FederationStore``: the same semantics as the SQLite one, for fast tests.

Nothing survives the process. ``*_in`` methods ignore the transaction handle:
an in-memory caller has no transaction to join, so they apply at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from coral.federation.peer_record import PeerRecord
from coral.federation.ports import OutboxItem, RetryPolicy
from coral.federation.records import GossipRecord
from coral.federation.retry import next_retry_ms


class InMemoryFederationStore:
    """Outbox, inbox dedupe, gossip view and thread owners in dictionaries."""

    def __init__(self, *, rng: random.Random | None = None, retry: RetryPolicy | None = None):
        self.rng = rng or random.Random()
        self.retry = retry or RetryPolicy()
        #: (envelope_id, destination) -> item, in the order queued.
        self.outbox: dict[tuple[str, str], OutboxItem] = {}
        self.dead: dict[tuple[str, str], OutboxItem] = {}
        self.inbox: dict[str, tuple[str, int]] = {}
        self.peers: dict[str, PeerRecord] = {}
        self.agents: dict[str, GossipRecord] = {}
        self.owners: dict[str, str] = {}

    async def enqueue(
        self, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """Queue an envelope for a node, due now; False if that pair is already queued."""
        return self.enqueue_in(None, envelope_id, destination, payload, now_ms)

    def enqueue_in(
        self, transaction: object, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """``enqueue``, applied at once."""
        key = (envelope_id, destination)
        if key in self.outbox or key in self.dead:
            return False
        self.outbox[key] = OutboxItem(envelope_id, destination, payload, now_ms, 0, now_ms, "")
        return True

    def record_inbound_in(
        self, transaction: object, message_id: str, origin: str, now_ms: int
    ) -> bool:
        """Remember a received envelope id; True only the first time."""
        if message_id in self.inbox:
            return False
        self.inbox[message_id] = (origin, now_ms)
        return True

    async def prune_inbox(self, received_before_ms: int) -> int:
        """Forget received envelope ids recorded before ``received_before_ms``; returns how many."""
        old = [k for k, (_, at) in self.inbox.items() if at < received_before_ms]
        for key in old:
            del self.inbox[key]
        return len(old)

    async def queues(self, per_destination: int = 100) -> dict[str, list[OutboxItem]]:
        """Live items per destination, oldest first."""
        queues: dict[str, list[OutboxItem]] = {}
        for item in self.outbox.values():
            queue = queues.setdefault(item.destination, [])
            if len(queue) < per_destination:
                queue.append(item)
        return dict(sorted(queues.items()))

    async def ack_many(self, destination: str, envelope_ids: list[str]) -> None:
        """Delete delivered items."""
        for envelope_id in envelope_ids:
            self.outbox.pop((envelope_id, destination), None)

    async def fail(
        self, envelope_id: str, destination: str, now_ms: int, error: str = ""
    ) -> int | None:
        """Schedule a jittered retry and return its time; None when dead or absent."""
        key = (envelope_id, destination)
        item = self.outbox.get(key)
        if item is None:
            return None
        attempts = item.attempts + 1
        due = now_ms + next_retry_ms(attempts - 1, self.rng, self.retry.base_ms, self.retry.cap_ms)
        updated = OutboxItem(
            envelope_id, destination, item.payload, item.enqueued_at, attempts, due, error[:1000]
        )
        if attempts >= self.retry.max_attempts:
            del self.outbox[key]
            self.dead[key] = updated
            return None
        self.outbox[key] = updated
        return due

    async def save_records(self, records: Iterable[GossipRecord]) -> None:
        """Keep accepted records (each replaces its older self)."""
        for record in records:
            if isinstance(record, PeerRecord):
                self.peers[record.node] = record
            else:
                self.agents[record.agent] = record

    async def delete_peers(self, nodes: Iterable[str]) -> None:
        """Drop peer records."""
        for node in nodes:
            self.peers.pop(node, None)

    async def load_records(self) -> list[GossipRecord]:
        """Every kept record, peers first."""
        records: list[GossipRecord] = [r for _, r in sorted(self.peers.items())]
        return records + [r for _, r in sorted(self.agents.items())]

    async def thread_owners(self) -> dict[str, str]:
        """Which node owns each mirrored thread."""
        return dict(self.owners)

    async def set_thread_owner(self, thread_id: str, owner: str) -> str:
        """Record the owner unless one is; returns the owner recorded (the first wins)."""
        return self.owners.setdefault(thread_id, owner)
