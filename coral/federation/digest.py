"""Compact summaries of a node's view, so a gossip round moves only what differs.

Every record belongs to an origin node (see ``record_origin``). Origins fall
into ``NUM_BUCKETS`` buckets by hash. Per origin we keep a summary (peer
record ``seq``, agent count, XOR of per-agent hashes); per bucket, the XOR of
its origins' summary hashes. XOR makes every update O(1), and two nodes with
equal bucket hashes (almost surely) hold the same records for that bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from coral.federation.peer_record import PeerRecord
from coral.federation.records import GossipRecord
from coral.protocol.agent import AgentRecord

#: A protocol constant: both sides of a round must bucket origins the same way.
NUM_BUCKETS = 64


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def bucket_of(origin: str) -> int:
    """The bucket an origin node's records are summarized in."""
    return hashlib.blake2b(origin.encode(), digest_size=1).digest()[0] % NUM_BUCKETS


def agent_entry_hash(record: AgentRecord) -> int:
    """Hash of one directory entry as it counts toward its origin's summary."""
    return _hash64(f"{record.agent}\x1f{record.version}\x1f{record.node_signature or ''}")


@dataclass(frozen=True, slots=True)
class OriginSummary:
    """What a node holds for one origin: peer record seq (0 = none) and its agents."""

    peer_seq: int = 0
    agent_count: int = 0
    agents_hash: int = 0

    def entry_hash(self, origin: str) -> int:
        """The summary's contribution to its bucket hash."""
        return _hash64(f"{origin}\x1f{self.peer_seq}\x1f{self.agent_count}\x1f{self.agents_hash}")


EMPTY_SUMMARY = OriginSummary()


@dataclass(frozen=True, slots=True)
class Digest:
    """All bucket hashes, plus per-origin summaries for the buckets in ``origins``."""

    bucket_hashes: tuple[int, ...]
    origins: Mapping[int, Mapping[str, OriginSummary]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GossipRequest:
    """What one side asks the other for: peer records by node, agent records by origin."""

    peers: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()

    def is_empty(self) -> bool:
        """True when nothing is requested."""
        return not self.peers and not self.origins


@dataclass(frozen=True, slots=True)
class DigestDiff:
    """The result of comparing a remote digest with ours."""

    #: Our records the remote lacks or may hold older (whole origins when they differ).
    to_send: list[GossipRecord]
    #: What the remote holds that we lack or hold older.
    request: GossipRequest


class OriginIndex:
    """Peer and agent records grouped by origin, with incrementally maintained hashes."""

    def __init__(self) -> None:
        self.peers: dict[str, PeerRecord] = {}
        self.agents: dict[str, AgentRecord] = {}
        self._by_origin: dict[str, dict[str, AgentRecord]] = {}
        self._agents_hash: dict[str, int] = {}
        self._entry_hash: dict[str, int] = {}
        # Origins whose summaries are recomputed lazily, once per batch of changes.
        self._dirty: set[str] = set()
        self._buckets: list[dict[str, OriginSummary]] = [{} for _ in range(NUM_BUCKETS)]
        self._bucket_hash = [0] * NUM_BUCKETS

    def put_peer(self, record: PeerRecord) -> None:
        """Store or replace the peer record of ``record.node``."""
        self.peers[record.node] = record
        self._dirty.add(record.node)

    def remove_peer(self, node: str) -> PeerRecord | None:
        """Forget a node's peer record (its agents' entries stay); returns it."""
        old = self.peers.pop(node, None)
        if old is not None:
            self._dirty.add(node)
        return old

    def put_agent(self, record: AgentRecord) -> None:
        """Store or replace the directory entry of ``record.agent``."""
        self.remove_agent(record.agent)
        self.agents[record.agent] = record
        origin = record.home_node
        self._by_origin.setdefault(origin, {})[record.agent] = record
        entry = agent_entry_hash(record)
        self._entry_hash[record.agent] = entry
        self._agents_hash[origin] = self._agents_hash.get(origin, 0) ^ entry
        self._dirty.add(origin)

    def remove_agent(self, agent: str) -> AgentRecord | None:
        """Forget an agent's entry entirely; returns what was removed."""
        old = self.agents.pop(agent, None)
        if old is None:
            return None
        origin = old.home_node
        group = self._by_origin[origin]
        del group[agent]
        self._agents_hash[origin] ^= self._entry_hash.pop(agent)
        if not group:
            del self._by_origin[origin]
            del self._agents_hash[origin]
        self._dirty.add(origin)
        return old

    def agents_of(self, origin: str) -> list[AgentRecord]:
        """Every entry whose home node is ``origin``."""
        return list(self._by_origin.get(origin, {}).values())

    def bucket_hashes(self) -> tuple[int, ...]:
        """The per-bucket hashes that open every round."""
        self._flush()
        return tuple(self._bucket_hash)

    def summaries(self, bucket: int) -> Mapping[str, OriginSummary]:
        """The origin summaries in one bucket (read-only view)."""
        self._flush()
        return self._buckets[bucket]

    def digest(self, buckets: Iterable[int] | None = None) -> Digest:
        """A digest carrying summaries for ``buckets`` (all buckets when None)."""
        self._flush()
        chosen = range(NUM_BUCKETS) if buckets is None else buckets
        origins = {b: dict(self._buckets[b]) for b in chosen if 0 <= b < NUM_BUCKETS}
        return Digest(self.bucket_hashes(), origins)

    def _flush(self) -> None:
        for origin in self._dirty:
            self._refresh(origin)
        self._dirty.clear()

    def _refresh(self, origin: str) -> None:
        bucket = bucket_of(origin)
        entries = self._buckets[bucket]
        old = entries.pop(origin, None)
        if old is not None:
            self._bucket_hash[bucket] ^= old.entry_hash(origin)
        peer = self.peers.get(origin)
        group = self._by_origin.get(origin)
        if peer is None and not group:
            return
        summary = OriginSummary(
            peer_seq=peer.seq if peer else 0,
            agent_count=len(group) if group else 0,
            agents_hash=self._agents_hash.get(origin, 0),
        )
        entries[origin] = summary
        self._bucket_hash[bucket] ^= summary.entry_hash(origin)
