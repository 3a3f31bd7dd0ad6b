"""The reference driver of one push-pull round between two in-process states.

Tests and the scale simulation use it as the transport; the node's gRPC
transport performs the same four steps over the network. ``deliver`` decides
whether each message arrives, which models loss; a lost message ends the
round early, exactly as a timed-out RPC would. ``apply`` receives what each
side is sent; by default it merges at once, and a simulation of synchronous
rounds passes one that holds records until the round ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from coral.federation.errors import PeerBanned
from coral.federation.gossip import GossipState
from coral.federation.records import GossipRecord
from coral.federation.wire import digest_to_wire, record_to_wire, request_to_wire, wire_size

_HASH_BYTES = 16 + 3  # one hex hash in JSON: quotes and a comma

#: Receives (receiving state, records, sending peer's did).
ApplyRecords = Callable[[GossipState, list[GossipRecord], str], None]


class WireSizer:
    """Measures message sizes in the JSON wire encoding, caching per-record sizes."""

    def __init__(self) -> None:
        # Keyed by object identity; the record is kept alive so the id stays its own.
        self._record_sizes: dict[int, tuple[GossipRecord, int]] = {}

    def records(self, records: list[GossipRecord]) -> int:
        """Bytes of a list of records."""
        total = 2
        for record in records:
            cached = self._record_sizes.get(id(record))
            if cached is None:
                cached = (record, wire_size(record_to_wire(record)) + 1)
                self._record_sizes[id(record)] = cached
            total += cached[1]
        return total


@dataclass(slots=True)
class ExchangeStats:
    """What one round moved."""

    messages: int = 0
    bytes: int = 0
    records: int = 0
    completed: bool = False


def run_exchange(
    initiator: GossipState,
    responder: GossipState,
    now_ms: int,
    *,
    sizer: WireSizer | None = None,
    deliver: Callable[[], bool] = lambda: True,
    apply: ApplyRecords | None = None,
) -> ExchangeStats:
    """Run the four-step round; each side gets what reaches it through ``apply``.

    A banned initiator gets nothing: the responder refuses it before step 2.
    """
    sizer = sizer or WireSizer()
    if apply is None:

        def apply(state: GossipState, records: list[GossipRecord], source: str) -> None:
            try:
                state.merge(records, now_ms, source=source)
            except PeerBanned:
                pass

    stats = ExchangeStats()
    a_did, b_did = initiator.self_did, responder.self_did

    hashes = initiator.bucket_hashes()
    stats.messages += 1
    stats.bytes += len(hashes) * _HASH_BYTES
    if not deliver():
        return stats
    if responder.scores.is_banned(a_did, now_ms):
        return stats
    buckets = responder.differing_buckets(hashes)
    if not buckets:
        stats.completed = True
        return stats

    digest = responder.make_digest(buckets)
    stats.messages += 1
    stats.bytes += wire_size(digest_to_wire(digest))
    if not deliver():
        return stats

    diff = initiator.diff(digest)
    stats.messages += 1
    stats.bytes += sizer.records(diff.to_send) + wire_size(request_to_wire(diff.request))
    stats.records += len(diff.to_send)
    if not deliver():
        return stats
    apply(responder, diff.to_send, a_did)
    if responder.scores.is_banned(a_did, now_ms):
        return stats  # the records just sent got the initiator banned: no answer
    if diff.request.is_empty():
        stats.completed = True
        return stats

    answer = responder.records_for(diff.request, diff.to_send)
    stats.messages += 1
    stats.bytes += sizer.records(answer)
    stats.records += len(answer)
    if not deliver():
        return stats
    apply(initiator, answer, b_did)
    stats.completed = True
    return stats
