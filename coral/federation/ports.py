"""What the federation driver needs from the outside world: storage, peers, metrics.

``FederationStore`` keeps the outbox, the inbox dedupe, the persisted gossip
view and which node owns each mirrored thread (``coral.store.federation_sqlite``
on SQLite, ``coral.store.federation_postgres`` on PostgreSQL, shared by a
node's replicas; ``coral.federation.memory`` in memory for tests). ``PeerTransport``
carries the node-to-node calls (``coral.api.grpc.federation_client`` over
gRPC). Payloads cross both as opaque JSON text; the driver owns their meaning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from coral.federation.records import GossipRecord
from coral.protocol.errors import CoralError


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One envelope waiting for delivery to one destination node."""

    envelope_id: str
    destination: str
    payload: bytes
    enqueued_at: int
    attempts: int
    next_attempt_at: int
    last_error: str


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff bounds for failed deliveries, and when to give up (dead-letter)."""

    base_ms: int = 500
    cap_ms: int = 5 * 60 * 1000
    max_attempts: int = 30
    #: How long a claimed item stays invisible to other claims before it is due again.
    claim_lease_ms: int = 30_000


class FederationStore(Protocol):
    """Durable federation state: outbox, inbox dedupe, gossip view, thread owners.

    The ``*_in`` methods join a transaction another store opened on the same
    database (``WriteScope.transaction`` of a coordination write), so their rows
    commit with that write or not at all; they are called synchronously inside
    it. SQLite runs the statement there and then; PostgreSQL (where a hook
    cannot await) queues it on the write's ``DeferredStatements``, which the
    write runs before it commits, so there the answer is known only to the
    write: ``enqueue_in`` returns True, and ``record_inbound_in`` guards the
    write (``ReplicatedThreads.mirror`` reports a repeat).
    """

    async def enqueue(
        self, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """Queue an envelope for a node, due now; False if that pair is already queued."""
        ...

    def enqueue_in(
        self, transaction: object, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """``enqueue`` inside ``transaction``; False if that pair is already queued."""
        ...

    def record_inbound_in(
        self, transaction: object, message_id: str, origin: str, now_ms: int
    ) -> bool:
        """Remember a received envelope id inside ``transaction``; True only the first time."""
        ...

    async def prune_inbox(self, received_before_ms: int) -> int:
        """Forget received envelope ids recorded before ``received_before_ms``; returns how many."""
        ...

    async def queues(self, per_destination: int = 100) -> dict[str, list[OutboxItem]]:
        """Live (not dead-lettered) items per destination, oldest first."""
        ...

    async def ack_many(self, destination: str, envelope_ids: list[str]) -> None:
        """Delete several delivered items for one destination at once."""
        ...

    async def fail(
        self, envelope_id: str, destination: str, now_ms: int, error: str = ""
    ) -> int | None:
        """Schedule a jittered retry (persisted) and return its time; None when dead or absent."""
        ...

    async def save_records(self, records: Iterable[GossipRecord]) -> None:
        """Persist records the gossip state accepted (each replaces its older self)."""
        ...

    async def delete_peers(self, nodes: Iterable[str]) -> None:
        """Drop peer records (expired or retired)."""
        ...

    async def load_records(self) -> list[GossipRecord]:
        """Every persisted record, peers first."""
        ...

    async def thread_owners(self) -> dict[str, str]:
        """Which node owns each mirrored thread (thread id -> node did)."""
        ...

    async def set_thread_owner(self, thread_id: str, owner: str) -> str:
        """Record ``owner`` as the node owning ``thread_id`` unless one is; returns the owner.

        The first owner recorded wins, also between replicas racing on one database.
        """
        ...


@dataclass(frozen=True, slots=True)
class OutboundEnvelope:
    """One envelope on the wire: id (``kind:key``), kind and JSON payload text."""

    id: str
    kind: str
    payload_json: str


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How far a peer got through a batch: the first ``applied`` envelopes, then ``error``."""

    applied: int
    error: str = ""


class PeerUnreachable(CoralError):
    """A call to a peer node failed in transport (refused, timed out, or answered an error)."""

    reason = "peer_unreachable"
    category = "unavailable"


class PeerTransport(Protocol):
    """Node-to-node calls, each signed by this node; the address is the peer's gRPC address.

    Every call raises ``PeerUnreachable`` (with the peer's error text) when the
    transport or the peer fails, and may raise ``ValueError`` for a malformed answer.
    """

    async def hello(self, address: str, peer_record_json: str) -> str:
        """Introduce this node; returns the peer's own signed record as JSON.

        Raises:
            PeerUnreachable: the call failed.
        """
        ...

    async def gossip_hashes(self, address: str, bucket_hashes: Sequence[int]) -> str:
        """Send bucket hashes; returns the digest JSON of differing buckets ("" when none).

        Raises:
            PeerUnreachable: the call failed.
        """
        ...

    async def gossip_exchange(self, address: str, records_json: str, request_json: str) -> str:
        """Push records and a request; returns the records the peer sends back (JSON).

        Raises:
            PeerUnreachable: the call failed.
        """
        ...

    async def deliver_batch(
        self, address: str, envelopes: Sequence[OutboundEnvelope]
    ) -> BatchOutcome:
        """Deliver envelopes in order; the peer stops at its first failure.

        Raises:
            PeerUnreachable: the call failed before anything was applied.
        """
        ...

    async def close(self) -> None:
        """Close every open connection."""
        ...


class FederationMetrics(Protocol):
    """The counters federation reports (prometheus in the node)."""

    def gossip_round(self, peers: int) -> None:
        """A gossip round ran; ``peers`` nodes are known besides this one."""
        ...

    def rejected(self, reason: str) -> None:
        """A gossiped record was refused for ``reason``."""
        ...

    def outbox_depth(self, depth: int) -> None:
        """``depth`` envelopes wait in the outbox."""
        ...
