"""Push-pull anti-entropy over peer records and the agent directory, without I/O.

A round between an initiator A and a responder B is four messages, each a
plain value the transport carries (``exchange.run_exchange`` is the reference
driver):

1. A -> B  ``A.bucket_hashes()``                    (64 hashes, ~1 KiB)
2. B -> A  ``B.make_digest(B.differing_buckets(1))`` (summaries of differing buckets)
3. A -> B  ``A.diff(2)``: records B lacks + a GossipRequest for what A lacks
4. B -> A  ``B.records_for(request, records from 3)``

Each side ``merge``s what it receives. When views agree, a round costs the
64 bucket hashes and nothing else.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from coral.federation.digest import (
    EMPTY_SUMMARY,
    NUM_BUCKETS,
    Digest,
    DigestDiff,
    GossipRequest,
    OriginIndex,
)
from coral.federation.errors import (
    ExpiredPeerRecord,
    ExpiredTombstone,
    PeerBanned,
    PeerFlooding,
    PeerTableFull,
    RetiredNodeKey,
)
from coral.federation.peer_record import DEFAULT_MAX_FUTURE_SKEW_MS, PeerRecord
from coral.federation.peers import PeerScores, PeerSet, ScoringPolicy
from coral.federation.records import (
    GossipRecord,
    RecordVerifier,
    agent_record_newer,
    peer_record_newer,
)
from coral.protocol.agent import AgentRecord
from coral.protocol.errors import CoralError, SignatureError


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Bounds and timings of one node's gossip."""

    fanout: int = 3
    max_active_peers: int = 32
    max_known_peers: int = 10_000
    #: Tombstones outlive any partition we expect to heal; then they are purged.
    tombstone_ttl_ms: int = 7 * 24 * 3600 * 1000
    #: A peer record older than this is dropped: live nodes re-issue theirs
    #: well within it (``refresh_due``) and gossip carries the fresh one.
    peer_record_ttl_ms: int = 3600 * 1000
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS
    scoring: ScoringPolicy = field(default_factory=ScoringPolicy)


@dataclass(slots=True)
class MergeResult:
    """What happened to each record offered to ``merge``."""

    accepted: list[GossipRecord] = field(default_factory=list)
    stale: list[GossipRecord] = field(default_factory=list)
    rejected: list[tuple[GossipRecord, str]] = field(default_factory=list)
    #: Agents whose entries were removed because an expired tombstone outranked them.
    purged: list[str] = field(default_factory=list)
    #: Node ids retired by a verified key hand-over (their peer records were dropped).
    retired: list[str] = field(default_factory=list)


class GossipState:
    """One node's replicated view: peer records, the agent directory, peers and scores."""

    def __init__(
        self,
        self_did: str,
        *,
        rng: random.Random,
        config: GossipConfig | None = None,
        verifier: RecordVerifier | None = None,
    ) -> None:
        self.self_did = self_did
        self.config = config or GossipConfig()
        self.rng = rng
        self.verifier = verifier or RecordVerifier(
            max_future_skew_ms=self.config.max_future_skew_ms
        )
        self.scores = PeerScores(self.config.scoring)
        self.peer_set = PeerSet(self_did, self.config.max_active_peers)
        self._index = OriginIndex()
        self._tombstones: list[tuple[int, str, int]] = []
        #: Retired node id -> the id it handed over to (verified node hand-overs).
        self._successors: dict[str, str] = {}

    @property
    def peers(self) -> Mapping[str, PeerRecord]:
        """Known peer records by node did (this node's own record included)."""
        return self._index.peers

    @property
    def agents(self) -> Mapping[str, AgentRecord]:
        """The directory by agent did, tombstones included until purged."""
        return self._index.agents

    def merge(
        self, records: Iterable[GossipRecord], now_ms: int, source: str | None = None
    ) -> MergeResult:
        """Apply records; newer ones win. ``source`` is the sending peer (None = local).

        Raises PeerBanned when ``source`` is banned. A peer over its record
        allowance gets the excess rejected ("peer_flood"); bad signatures
        cost it score, and a ban mid-batch rejects the rest ("peer_banned").
        """
        batch = list(records)
        result = MergeResult()
        allowed = len(batch)
        if source is not None:
            self.scores.check(source, now_ms)
            allowed = self.scores.admit(source, len(batch), now_ms)
        for position, record in enumerate(batch):
            if position >= allowed:
                result.rejected.append((record, PeerFlooding.reason))
                continue
            try:
                accepted = self._merge_one(record, now_ms, result)
            except CoralError as exc:
                result.rejected.append((record, exc.reason))
                if source is not None and isinstance(exc, SignatureError):
                    penalty = self.config.scoring.bad_record_penalty
                    if self.scores.penalize(source, penalty, now_ms):
                        self.peer_set.drop(source)
                        result.rejected.extend(
                            (r, PeerBanned.reason) for r in batch[position + 1 :]
                        )
                        break
                continue
            if accepted:
                result.accepted.append(record)
            else:
                result.stale.append(record)
        if source is not None and result.accepted:
            self.scores.reward(source, self.config.scoring.accepted_reward * len(result.accepted))
        return result

    def _merge_one(self, record: GossipRecord, now_ms: int, result: MergeResult) -> bool:
        # Order matters for cost: staleness is free, time is cheap, signatures are not.
        if isinstance(record, PeerRecord):
            old_peer = self._index.peers.get(record.node)
            if old_peer is not None and not peer_record_newer(record, old_peer):
                return False
            if old_peer is None and len(self._index.peers) >= self.config.max_known_peers:
                raise PeerTableFull("peer table is full")
            if record.node != self.self_did and self._peer_expired(record, now_ms):
                raise ExpiredPeerRecord("peer record is past its time to live")
            if record.node in self._successors:
                raise RetiredNodeKey(
                    f"{record.node} handed over to {self._successors[record.node]}"
                )
            self.verifier.check(record, now_ms)
            self._index.put_peer(record)
            if record.previous is not None:
                self._retire(record.previous.old_did, record.node, result)
            if record.node != self.self_did and not self.scores.is_banned(record.node, now_ms):
                self.peer_set.add(record.node)
            return True
        old = self._index.agents.get(record.agent)
        if old is not None and not agent_record_newer(record, old):
            return False
        self.verifier.check(record, now_ms)
        expires_at = record.updated_at + self.config.tombstone_ttl_ms
        if record.deleted and expires_at <= now_ms:
            # Too old to keep, but it still outranks the entry it deletes.
            if old is not None:
                self._index.remove_agent(record.agent)
                result.purged.append(record.agent)
            raise ExpiredTombstone("tombstone is past its time to live")
        self._index.put_agent(record)
        if record.deleted:
            heapq.heappush(self._tombstones, (expires_at, record.agent, record.version))
        return True

    def _retire(self, old: str, new: str, result: MergeResult) -> None:
        # A verified node hand-over: the old id is gone for good (a stolen
        # old key cannot bring it back), and ``successor_of`` finds the new one.
        self._successors[old] = new
        if self._index.remove_peer(old) is not None:
            result.retired.append(old)
        self.peer_set.drop(old)

    def successor_of(self, node: str) -> str:
        """The id ``node`` handed its key over to, followed to the end (itself when none)."""
        seen = {node}
        while node in self._successors and self._successors[node] not in seen:
            node = self._successors[node]
            seen.add(node)
        return node

    def _peer_expired(self, record: PeerRecord, now_ms: int) -> bool:
        return record.issued_at + self.config.peer_record_ttl_ms <= now_ms

    def purge_expired_peers(self, now_ms: int) -> list[str]:
        """Forget peers whose records passed their TTL; returns their dids.

        A node that stopped refreshing its record (gone, or rotated away) leaves
        the peer table and the active set; its agents' entries stay until
        their own records say otherwise.
        """
        expired = [
            node
            for node, record in self._index.peers.items()
            if node != self.self_did and self._peer_expired(record, now_ms)
        ]
        for node in expired:
            self._index.remove_peer(node)
            self.peer_set.drop(node)
        return expired

    def refresh_due(self, now_ms: int) -> bool:
        """True when this node should re-issue its own record (a third of the TTL passed)."""
        own = self._index.peers.get(self.self_did)
        return own is None or now_ms - own.issued_at >= self.config.peer_record_ttl_ms // 3

    def purge_expired_tombstones(self, now_ms: int) -> list[str]:
        """Forget tombstones older than the TTL; returns the agent dids purged."""
        purged = []
        while self._tombstones and self._tombstones[0][0] <= now_ms:
            _, agent, version = heapq.heappop(self._tombstones)
            current = self._index.agents.get(agent)
            if current is not None and current.deleted and current.version == version:
                self._index.remove_agent(agent)
                purged.append(agent)
        return purged

    def bucket_hashes(self) -> tuple[int, ...]:
        """Step 1 of a round: the hashes of every bucket."""
        return self._index.bucket_hashes()

    def differing_buckets(self, remote_hashes: Sequence[int]) -> list[int]:
        """Buckets whose hash differs from the remote's (all of them on a length mismatch)."""
        ours = self._index.bucket_hashes()
        if len(remote_hashes) != NUM_BUCKETS:
            return list(range(NUM_BUCKETS))
        return [b for b in range(NUM_BUCKETS) if ours[b] != remote_hashes[b]]

    def make_digest(self, buckets: Iterable[int] | None = None) -> Digest:
        """Step 2: origin summaries for ``buckets`` (every bucket when None)."""
        return self._index.digest(buckets)

    def diff(self, remote: Digest) -> DigestDiff:
        """Step 3: our records the remote lacks, and a request for what we lack.

        Where an origin's agent summaries differ we send every entry we hold
        for it (the remote drops the stale ones) and ask for the remote's,
        because a summary cannot say which single entry differs.
        """
        ours = self._index.bucket_hashes()
        to_send: list[GossipRecord] = []
        want_peers: set[str] = set()
        want_origins: set[str] = set()
        for bucket, theirs in remote.origins.items():
            if not 0 <= bucket < NUM_BUCKETS:
                continue
            if (
                len(remote.bucket_hashes) == NUM_BUCKETS
                and remote.bucket_hashes[bucket] == ours[bucket]
            ):
                continue
            mine = self._index.summaries(bucket)
            for origin in sorted(mine.keys() | theirs.keys()):
                own = mine.get(origin, EMPTY_SUMMARY)
                other = theirs.get(origin, EMPTY_SUMMARY)
                if own.peer_seq > other.peer_seq:
                    to_send.append(self._index.peers[origin])
                elif other.peer_seq > own.peer_seq:
                    want_peers.add(origin)
                if (own.agent_count, own.agents_hash) != (other.agent_count, other.agents_hash):
                    to_send.extend(self._index.agents_of(origin))
                    if other.agent_count:
                        want_origins.add(origin)
        return DigestDiff(to_send, GossipRequest(frozenset(want_peers), frozenset(want_origins)))

    def records_for(
        self, request: GossipRequest, known_to_requester: Iterable[GossipRecord] = ()
    ) -> list[GossipRecord]:
        """Step 4: records answering ``request``, minus any the requester already holds as new."""
        their_peers: dict[str, PeerRecord] = {}
        their_agents: dict[str, AgentRecord] = {}
        for record in known_to_requester:
            if isinstance(record, PeerRecord):
                their_peers[record.node] = record
            else:
                their_agents[record.agent] = record
        out: list[GossipRecord] = []
        for node in sorted(request.peers):
            peer = self._index.peers.get(node)
            theirs = their_peers.get(node)
            if peer is not None and (theirs is None or peer_record_newer(peer, theirs)):
                out.append(peer)
        for origin in sorted(request.origins):
            for entry in self._index.agents_of(origin):
                other = their_agents.get(entry.agent)
                if other is None or agent_record_newer(entry, other):
                    out.append(entry)
        return out

    def choose_gossip_targets(self, now_ms: int) -> list[str]:
        """Refresh the active set (drop banned, rotate one, fill) and pick this round's peers."""
        known = [did for did in self._index.peers if did != self.self_did]
        self.peer_set.refresh(known, self.rng, lambda did: self.scores.is_banned(did, now_ms))
        return self.peer_set.choose(self.rng, self.config.fanout)
