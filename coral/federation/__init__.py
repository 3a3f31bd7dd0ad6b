"""Federation core: peer records, gossip of the agent directory, routing, retry timing.

Sans-I/O: callers pass the current time and a ``random.Random``; the node's
transport carries the values these functions return. ``driver`` (the use
cases) runs these over the ``ports`` (storage, peer calls, metrics), which
``coral.store.federation_sqlite`` and ``coral.api.grpc.federation_client``
implement; ``memory`` is the in-memory store for tests.
"""

from coral.federation.digest import Digest, DigestDiff, GossipRequest, OriginSummary
from coral.federation.driver import FederationNode
from coral.federation.errors import (
    ExpiredTombstone,
    PeerBanned,
    PeerFlooding,
    PeerTableFull,
    RecordFromFuture,
    UnsignedRecord,
)
from coral.federation.exchange import ExchangeStats, WireSizer, run_exchange
from coral.federation.gossip import GossipConfig, GossipState, MergeResult
from coral.federation.peer_record import (
    PEER_RECORD_DOMAIN,
    PeerAddresses,
    PeerRecord,
    issue_peer_record,
    parse_peer_record,
    sign_peer_record,
    verify_peer_record,
)
from coral.federation.peers import PeerScores, PeerSet, ScoringPolicy
from coral.federation.ports import FederationMetrics, FederationStore, PeerTransport
from coral.federation.records import GossipRecord, RecordVerifier, record_origin
from coral.federation.retry import next_retry_ms
from coral.federation.routing import (
    Route,
    RouteKind,
    SeenMessages,
    fanout_targets,
    route,
    thread_owner,
)

__all__ = [
    "PEER_RECORD_DOMAIN",
    "Digest",
    "DigestDiff",
    "ExchangeStats",
    "ExpiredTombstone",
    "FederationMetrics",
    "FederationNode",
    "FederationStore",
    "GossipConfig",
    "GossipRecord",
    "GossipRequest",
    "GossipState",
    "MergeResult",
    "OriginSummary",
    "PeerAddresses",
    "PeerBanned",
    "PeerFlooding",
    "PeerRecord",
    "PeerScores",
    "PeerSet",
    "PeerTableFull",
    "PeerTransport",
    "RecordFromFuture",
    "RecordVerifier",
    "Route",
    "RouteKind",
    "ScoringPolicy",
    "SeenMessages",
    "UnsignedRecord",
    "WireSizer",
    "fanout_targets",
    "issue_peer_record",
    "next_retry_ms",
    "parse_peer_record",
    "record_origin",
    "route",
    "run_exchange",
    "sign_peer_record",
    "thread_owner",
    "verify_peer_record",
]
