"""Typed federation errors, each a subclass of a protocol error family.

Adapters map them like any other ``CoralError``: the ``reason`` travels to the
remote node unchanged, so a peer learns why its gossip was refused.
"""

from __future__ import annotations

from coral.protocol.errors import (
    Conflict,
    Expired,
    Forbidden,
    FromFuture,
    MissingSignature,
    ResourceExhausted,
)


class UnsignedRecord(MissingSignature):
    """A peer or directory record arrived without the signature it needs."""

    reason = "unsigned_record"


class RecordFromFuture(FromFuture):
    """A record's timestamp lies further in the future than the allowed skew."""

    reason = "record_from_future"


class PeerBanned(Forbidden):
    """The sending peer scored below the ban threshold and is refused for a while."""

    reason = "peer_banned"


class PeerFlooding(ResourceExhausted):
    """The sending peer exceeded its record allowance for the current window."""

    reason = "peer_flood"


class PeerTableFull(ResourceExhausted):
    """The known-peer table is at ``max_known_peers``; a new node's record is refused."""

    reason = "peer_table_full"


class RetiredNodeKey(Conflict):
    """A record signed by a node key that was rotated away (its hand-over is known)."""

    reason = "retired_node_key"


class ExpiredPeerRecord(Expired):
    """A peer record older than its time to live: its node stopped refreshing it."""

    reason = "expired_peer_record"


class ExpiredTombstone(Expired):
    """A tombstone older than its time to live: it still deletes, but is not kept."""

    reason = "expired_tombstone"
