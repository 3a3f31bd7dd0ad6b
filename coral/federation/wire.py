"""JSON forms of everything a gossip round carries, for the node-to-node transport.

Hashes travel as 16 hex digits (64-bit integers do not survive I-JSON
numbers). Decoders raise ``InvalidMessage`` on any malformed input, so the
transport can hand a peer's bytes straight in.
"""

from __future__ import annotations

import json
from typing import Any

from coral.federation.digest import NUM_BUCKETS, Digest, GossipRequest, OriginSummary
from coral.federation.peer_record import PeerRecord, parse_peer_record
from coral.federation.records import GossipRecord
from coral.protocol.agent import parse_record
from coral.protocol.errors import InvalidMessage

#: Most origins one digest (or request) may name; bounds the work a peer can make us do.
MAX_DIGEST_ORIGINS = 100_000


def record_to_wire(record: GossipRecord) -> dict[str, Any]:
    """``{"peer": {...}}`` or ``{"agent": {...}}``."""
    kind = "peer" if isinstance(record, PeerRecord) else "agent"
    return {kind: record.model_dump(mode="json")}


def record_from_wire(obj: Any) -> GossipRecord:
    """Decode one record; InvalidMessage when the shape is wrong."""
    if isinstance(obj, dict) and len(obj) == 1:
        if "peer" in obj:
            return parse_peer_record(obj["peer"])
        if "agent" in obj:
            return parse_record(obj["agent"])
    raise InvalidMessage(
        "a gossip record is {'peer': ...} or {'agent': ...}", reason="invalid_record"
    )


def digest_to_wire(digest: Digest) -> dict[str, Any]:
    """``{"buckets": [hex...], "origins": {"<bucket>": {did: [seq, count, hex]}}}``."""
    return {
        "buckets": [f"{h:016x}" for h in digest.bucket_hashes],
        "origins": {
            str(bucket): {
                origin: [s.peer_seq, s.agent_count, f"{s.agents_hash:016x}"]
                for origin, s in entries.items()
            }
            for bucket, entries in digest.origins.items()
        },
    }


def digest_from_wire(obj: Any) -> Digest:
    """Decode a digest, refusing malformed or oversized input."""
    try:
        hashes = tuple(int(h, 16) for h in obj["buckets"])
        origins: dict[int, dict[str, OriginSummary]] = {}
        total = 0
        for bucket_text, entries in obj.get("origins", {}).items():
            bucket = int(bucket_text)
            if not 0 <= bucket < NUM_BUCKETS:
                raise ValueError("bucket out of range")
            total += len(entries)
            if total > MAX_DIGEST_ORIGINS:
                raise ValueError("too many origins")
            origins[bucket] = {
                str(origin): OriginSummary(int(seq), int(count), int(agents_hash, 16))
                for origin, (seq, count, agents_hash) in entries.items()
            }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidMessage(f"malformed digest: {exc}", reason="invalid_digest") from None
    if len(hashes) != NUM_BUCKETS:
        raise InvalidMessage(f"a digest has {NUM_BUCKETS} bucket hashes", reason="invalid_digest")
    return Digest(hashes, origins)


def request_to_wire(request: GossipRequest) -> dict[str, Any]:
    """``{"peers": [did...], "origins": [did...]}``, sorted for stable bytes."""
    return {"peers": sorted(request.peers), "origins": sorted(request.origins)}


def request_from_wire(obj: Any) -> GossipRequest:
    """Decode a request; InvalidMessage when it is not two lists of strings."""
    try:
        peers = obj["peers"]
        origins = obj["origins"]
        if not all(isinstance(x, str) for x in [*peers, *origins]):
            raise TypeError("dids are strings")
        if len(peers) + len(origins) > MAX_DIGEST_ORIGINS:
            raise TypeError("request is too large")
    except (KeyError, TypeError) as exc:
        raise InvalidMessage(f"malformed gossip request: {exc}", reason="invalid_request") from None
    return GossipRequest(frozenset(peers), frozenset(origins))


def wire_size(obj: Any) -> int:
    """Bytes of the compact JSON encoding of a wire object."""
    return len(json.dumps(obj, separators=(",", ":")))
