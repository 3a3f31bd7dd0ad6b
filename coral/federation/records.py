"""What gossip carries (peer records and agent records) and how each is checked.

Signature checks dominate the cost of a gossip round, and the same record
arrives from many peers, so verified records are remembered. The cache is
looked up by signature (cheap to hash) but a hit also requires the whole
record to be equal to the one that verified, so a record with an altered
body or signature is never a hit.
"""

from __future__ import annotations

from collections import OrderedDict

from coral.federation.errors import RecordFromFuture
from coral.federation.peer_record import (
    DEFAULT_MAX_FUTURE_SKEW_MS,
    PeerRecord,
    verify_peer_record,
)
from coral.protocol.agent import AgentRecord, verify_record

GossipRecord = PeerRecord | AgentRecord


def record_origin(record: GossipRecord) -> str:
    """The node a record belongs to: the node itself, or the agent's home node."""
    return record.node if isinstance(record, PeerRecord) else record.home_node


def agent_record_newer(new: AgentRecord, old: AgentRecord) -> bool:
    """Total order on records of one agent: version, then tombstone, then time, then signature.

    Ties past ``version`` only occur when a home node signs two different
    records with one version; a total order makes every node pick the same one.
    """
    return (new.version, new.deleted, new.updated_at, new.node_signature or "") > (
        old.version,
        old.deleted,
        old.updated_at,
        old.node_signature or "",
    )


def peer_record_newer(new: PeerRecord, old: PeerRecord) -> bool:
    """Higher ``seq`` wins; the signature breaks a tie so every node agrees."""
    return (new.seq, new.signature or "") > (old.seq, old.signature or "")


class RecordVerifier:
    """Checks time bounds and signatures, remembering up to ``capacity`` verified records."""

    def __init__(
        self, *, capacity: int = 100_000, max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    ) -> None:
        self.capacity = capacity
        self.max_future_skew_ms = max_future_skew_ms
        self._verified: OrderedDict[str, GossipRecord] = OrderedDict()
        self.signature_checks = 0

    def check(self, record: GossipRecord, now_ms: int) -> None:
        """Raise a typed error unless the record is signed correctly and not from the future."""
        if isinstance(record, PeerRecord):
            if self._known(record, record.signature):
                # A cached record still meets the time bound: the clock moved, the record did not.
                self._check_time(record.issued_at, now_ms)
                return
            verify_peer_record(record, now_ms, max_future_skew_ms=self.max_future_skew_ms)
        else:
            self._check_time(record.updated_at, now_ms)
            if self._known(record, record.node_signature):
                return
            verify_record(record)
        self.signature_checks += 1
        self._remember(record)

    def _check_time(self, stamp_ms: int, now_ms: int) -> None:
        if stamp_ms > now_ms + self.max_future_skew_ms:
            raise RecordFromFuture(f"record stamped {stamp_ms - now_ms} ms in the future")

    def _known(self, record: GossipRecord, signature: str | None) -> bool:
        if not signature:
            return False
        seen = self._verified.get(signature)
        return seen is not None and (seen is record or seen == record)

    def _remember(self, record: GossipRecord) -> None:
        signature = record.signature if isinstance(record, PeerRecord) else record.node_signature
        if signature:
            self._verified[signature] = record
        if len(self._verified) > self.capacity:
            self._verified.popitem(last=False)
