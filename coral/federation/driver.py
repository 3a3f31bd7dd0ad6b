"""The federation use cases: gossip rounds, cross-node threads, the outbox.

``GossipState`` and the other cores decide (records, digests, routes); this
driver runs them over its ports: a ``FederationStore`` for durable state, a
``PeerTransport`` for node-to-node calls, and coordination's
``ReplicatedThreads`` for thread writes. Cross-node threads: the creator's
home node owns a thread and orders its log. Every write to an owned thread
that touches agents homed elsewhere queues, in the same transaction, one
``entries`` envelope per remote node; those nodes mirror the entries and fill
their own agents' inboxes. An agent posting to a thread owned elsewhere has
its signed message forwarded to the owner as a ``submit`` envelope. The
outbox retries with jittered, persisted backoff until the receiver
acknowledges; receivers drop duplicates by message id, so agents see every
message exactly once.

A node run as replicas (one database, one key) runs one driver per process:
each answers peers from its own copy of the shared view, which the
composition root keeps current (``reload``, ``merge_replicated``,
``learn_owner``, ``wake_outbox``), and only the lease holder runs the loops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from coral.agents.directory import AgentDirectory
from coral.agents.keyrotation import KeyHandover
from coral.coordination.commands import COMMAND_KINDS, apply_command
from coral.coordination.errors import DuplicateMessage, ThreadExists
from coral.coordination.gateway import MessageGateway
from coral.coordination.model import ThreadEntry
from coral.coordination.ports import HistoryGrant, ReplicatedThreads, ThreadWrite, WriteScope
from coral.coordination.ratelimit import RateLimiter
from coral.coordination.service import CoordinationService
from coral.federation.errors import ExpiredPeerRecord, PeerBanned
from coral.federation.gossip import GossipConfig, GossipState
from coral.federation.peer_record import (
    PeerAddresses,
    PeerRecord,
    issue_peer_record,
    parse_peer_record,
)
from coral.federation.ports import (
    BatchOutcome,
    FederationMetrics,
    FederationStore,
    OutboundEnvelope,
    OutboxItem,
    PeerTransport,
    PeerUnreachable,
)
from coral.federation.threads import entry_to_wire, thread_from_wire, thread_to_wire
from coral.federation.wire import (
    digest_from_wire,
    digest_to_wire,
    record_from_wire,
    record_to_wire,
    request_from_wire,
    request_to_wire,
)
from coral.protocol.agent import AgentRecord
from coral.protocol.canonical import parse_json
from coral.protocol.errors import CoralError, Forbidden, InvalidMessage, Unauthenticated
from coral.protocol.identity import Identity
from coral.protocol.message import Message, from_wire, new_message_id, now_ms, to_wire
from coral.protocol.signing import verify_message_signature

log = logging.getLogger("coral.federation")

#: Errors a receiver may resolve by itself later (gossip lag): worth retrying.
RETRYABLE_REASONS = {"agent_not_registered", "thread_not_found"}
#: How long a command id forwarded from another node is remembered (replay window).
COMMAND_MEMORY_MS = 10 * 24 * 3600 * 1000

#: Least time between two re-reads of a shared store prompted by unknown names (ms).
RELOAD_ON_MISS_MS = 1000

#: ``handler(caller_node, envelope_id, payload) -> duplicate``.
EnvelopeHandler = Callable[[str, str, dict[str, Any]], Awaitable[bool]]


class RetryLater(CoralError):
    """The receiver cannot apply the envelope yet (gossip lag); the sender retries."""

    reason = "retry_later"
    category = "unavailable"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class FederationNode:
    """One node's federation: its GossipState, outbox worker and peer calls.

    Built by the composition root with everything it uses; ``open`` loads the
    persisted view and hooks into coordination writes, ``publish_self`` issues
    the node's peer record, and ``run_gossip`` / ``run_outbox`` are the two
    background loops.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        store: FederationStore,
        transport: PeerTransport,
        directory: AgentDirectory,
        coordination: CoordinationService,
        threads: ReplicatedThreads,
        gateway: MessageGateway,
        metrics: FederationMetrics,
        peer_record_ttl_ms: int,
        bootstrap: Iterable[str] = (),
        handover: KeyHandover | None = None,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
        shared_store: bool = False,
    ) -> None:
        self.identity = identity
        self.did = identity.did
        self.store = store
        self.transport = transport
        self.directory = directory
        self.coordination = coordination
        self.threads = threads
        self.gateway = gateway
        self.metrics = metrics
        self.handover = handover
        self.clock = clock
        self.rng = rng or random.Random()
        #: Other processes (replicas of this node) write ``store`` too: re-read it on a miss.
        self.shared_store = shared_store
        self._last_reload_ms: int | None = None
        self.state = GossipState(
            self.did,
            rng=self.rng,
            config=GossipConfig(peer_record_ttl_ms=peer_record_ttl_ms),
        )
        self.bootstrap = list(bootstrap)
        self.owners: dict[str, str] = {}
        self.addresses = PeerAddresses()
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.peer_limiter = RateLimiter(500.0, 1000.0, lambda: asyncio.get_running_loop().time())
        #: Envelope kinds other use cases handle (e.g. cross-node payments).
        self.handlers: dict[str, EnvelopeHandler] = {}

    # -- start-up ----------------------------------------------------------------

    async def open(self) -> None:
        """Load the persisted view and hook into coordination writes and the directory."""
        self._loop = asyncio.get_running_loop()
        self.owners = await self.store.thread_owners()
        now = self.clock()
        loaded = self.state.merge(await self.store.load_records(), now)
        expired = [
            r.node
            for r, reason in loaded.rejected
            if isinstance(r, PeerRecord) and reason == ExpiredPeerRecord.reason
        ]
        if expired:  # peers that went quiet while this node was down
            await self.store.delete_peers(expired)
        local = await self.directory.search(local_only=True, include_deleted=True)
        self.state.merge(local, now)
        self.threads.add_write_hook(self._fanout_hook)
        self.directory.listeners.append(self.on_local_record)

    async def reload(self) -> None:
        """Merge the persisted gossip view and thread owners into memory.

        Other replicas of this node (sharing its database) write records and
        owners this process has not seen; their notices call this, and so
        does (with ``shared_store``) an inbound call naming a node, agent or
        thread unknown here. Merging is idempotent: only newer records change
        anything.
        """
        now = self.clock()
        self.state.merge(await self.store.load_records(), now)
        self.owners.update(await self.store.thread_owners())

    async def _reload_on_miss(self) -> None:
        # A peer named something unknown here: another replica may know it. At
        # most one such re-read per RELOAD_ON_MISS_MS, so unknown callers cannot
        # make every call re-read the whole view; a refused sender retries.
        now = self.clock()
        if not self.shared_store or (
            self._last_reload_ms is not None and now - self._last_reload_ms < RELOAD_ON_MISS_MS
        ):
            return
        self._last_reload_ms = now
        await self.reload()

    def merge_replicated(self, records: list[Any]) -> None:
        """Merge records another replica of this node accepted and stored (no new checks)."""
        self.state.merge(records, self.clock())

    def learn_owner(self, thread_id: str, owner: str) -> None:
        """Another replica recorded ``owner`` as the node owning ``thread_id``."""
        self.owners.setdefault(thread_id, owner)

    def wake_outbox(self) -> None:
        """Something was queued (maybe by another replica): the outbox worker looks now."""
        self._kick.set()

    def on_envelope(self, kind: str, handler: EnvelopeHandler) -> None:
        """Let ``handler`` apply envelopes of ``kind`` (returns True for a duplicate)."""
        self.handlers[kind] = handler

    def publish_self(self, addresses: PeerAddresses | None = None) -> None:
        """(Re)issue our signed peer record with the addresses we listen on.

        ``addresses`` replaces the remembered ones; refreshes reuse them.
        """
        if addresses is not None:
            self.addresses = addresses
        now = self.clock()
        # Newer than the record we hold, even when re-issued within the same millisecond.
        held = self.state.peers.get(self.did)
        seq = now if held is None else max(now, held.seq + 1)
        record = issue_peer_record(
            self.identity, self.addresses, now, seq=seq, previous=self.handover
        )
        self.state.merge([record], self.clock())

    def on_local_record(self, record: AgentRecord) -> None:
        """Gossip a record of an agent homed here (the directory calls it on each store)."""
        if record.home_node != self.did:
            return  # replicated records arrive through gossip already
        self.state.merge([record], self.clock())
        asyncio.get_running_loop().create_task(self.store.save_records([record]))

    def address_of(self, node: str) -> str | None:
        """The gRPC address ``node`` advertises, or None when it is unknown."""
        peer = self.state.peers.get(node)
        return peer.addresses.grpc if peer is not None else None

    def addresses_of(self, node: str) -> list[str]:
        """Every gRPC address ``node`` advertises (its replicas), from a random one on.

        Starting anywhere spreads peers' calls over a node's replicas; the
        rest are the fall-backs when one is unreachable.
        """
        peer = self.state.peers.get(node)
        addresses = peer.addresses.grpc_all() if peer is not None else []
        if len(addresses) < 2:
            return addresses
        start = self.rng.randrange(len(addresses))
        return addresses[start:] + addresses[:start]

    def _fresh_self(self) -> None:
        # Every replica answers peers with its own record: keep it from expiring.
        if self.state.refresh_due(self.clock()):
            self.publish_self()

    async def close(self) -> None:
        """Close the connections to peers."""
        await self.transport.close()

    # -- gossip, client side --------------------------------------------------------

    async def hello(self, address: str) -> str | None:
        """Introduce ourselves to ``address``; returns the peer's did when it answers.

        Raises:
            PeerUnreachable: the call failed.
            CoralError, ValueError: the peer's record was refused or malformed.
        """
        own = self.state.peers[self.did]
        answer = await self.transport.hello(address, _dumps(own.model_dump(mode="json")))
        record = parse_peer_record(parse_json(answer))
        await self._merge([record], source=None)
        return record.node

    async def gossip_round(self) -> None:
        """One push-pull round with this round's chosen peers.

        First keeps the peer table fresh: re-issues our own record when a
        third of its TTL has passed, and forgets peers whose records expired.
        """
        now = self.clock()
        if self.state.refresh_due(now):
            self.publish_self()
        expired = self.state.purge_expired_peers(now)
        if expired:
            log.info("forgot %d peer(s) whose records expired: %s", len(expired), expired)
            await self.store.delete_peers(expired)
        for peer in self.state.choose_gossip_targets(self.clock()):
            for address in self.addresses_of(peer):
                try:
                    await self.exchange_with(peer, address)
                    break
                except PeerUnreachable as exc:  # another replica of the peer may answer
                    log.debug("gossip with %s at %s failed: %s", peer, address, exc)
                except (CoralError, ValueError) as exc:
                    log.debug("gossip with %s failed: %s", peer, exc)
                    break
        self.metrics.gossip_round(max(0, len(self.state.peers) - 1))

    async def exchange_with(self, peer: str, address: str) -> None:
        """One digest exchange with ``peer``: compare bucket hashes, swap what differs.

        Raises:
            PeerUnreachable: a call failed.
            CoralError, ValueError: the answer was refused or malformed.
        """
        digest_json = await self.transport.gossip_hashes(address, self.state.bucket_hashes())
        if not digest_json:
            return
        diff = self.state.diff(digest_from_wire(parse_json(digest_json)))
        records_json = await self.transport.gossip_exchange(
            address,
            _dumps([record_to_wire(r) for r in diff.to_send]),
            _dumps(request_to_wire(diff.request)),
        )
        records = [record_from_wire(r) for r in parse_json(records_json)]
        await self._merge(records, source=peer)

    async def _merge(self, records: list[Any], source: str | None) -> None:
        try:
            result = self.state.merge(records, self.clock(), source=source)
        except PeerBanned:
            return
        for _record, reason in result.rejected:
            self.metrics.rejected(reason)
            log.info("refused gossip record from %s: %s", source, reason)
        if result.retired:
            log.info("node ids retired by a key hand-over: %s", result.retired)
            await self.store.delete_peers(result.retired)
        if not result.accepted:
            return
        await self.store.save_records(result.accepted)
        for record in result.accepted:
            if isinstance(record, AgentRecord) and record.home_node != self.did:
                try:
                    await self.directory.merge_remote(record)
                except CoralError as exc:
                    log.info("directory refused %s: %s", record.agent, exc.detail)

    # -- gossip, server side ---------------------------------------------------------

    async def on_hello(self, caller: str, peer_record_json: str) -> str:
        """A node introduced itself; returns our own record (JSON).

        Raises:
            Forbidden: the record is not the caller's own.
        """
        record = parse_peer_record(parse_json(peer_record_json))
        if record.node != caller:
            self.state.scores.penalize(caller, 10.0, self.clock())
            raise Forbidden("a node may only introduce itself", reason="peer_impersonation")
        self._fresh_self()
        await self._merge([record], source=caller)
        return _dumps(self.state.peers[self.did].model_dump(mode="json"))

    def _check_peer(self, caller: str) -> None:
        if self.state.scores.is_banned(caller, self.clock()):
            raise Forbidden("this node is banned for misbehaving", reason="peer_banned")

    def on_gossip_hashes(self, caller: str, hashes: list[int]) -> str:
        """The digest of the buckets whose hash differs from ``hashes`` ("" when none)."""
        self._check_peer(caller)
        self._fresh_self()
        buckets = self.state.differing_buckets(hashes)
        if not buckets:
            return ""
        return _dumps(digest_to_wire(self.state.make_digest(buckets)))

    async def on_gossip_exchange(self, caller: str, records_json: str, request_json: str) -> str:
        """Merge the caller's records and answer its request (records JSON).

        Raises:
            Forbidden: the caller is banned.
            InvalidMessage: ``records_json`` is not a JSON array.
        """
        self._check_peer(caller)
        records = parse_json(records_json)
        if not isinstance(records, list):
            raise InvalidMessage("records_json is a JSON array", reason="invalid_record")
        incoming = [record_from_wire(r) for r in records]
        request = request_from_wire(parse_json(request_json))
        answer = self.state.records_for(request, incoming)
        await self._merge(incoming, source=caller)
        return _dumps([record_to_wire(r) for r in answer])

    # -- cross-node threads: owner side ----------------------------------------------------

    def home_of(self, agent: str) -> str | None:
        """The node ``agent`` is homed on, or None when unknown or deleted."""
        record = self.state.agents.get(agent)
        return None if record is None or record.deleted else record.home_node

    def _fanout_hook(self, write: ThreadWrite, scope: WriteScope) -> None:
        # Runs synchronously inside the write's transaction (on the database thread).
        thread = write.thread
        if self.owners.get(thread.id, self.did) != self.did:
            return
        involved = set(thread.participants)
        for pending in write.entries:
            involved.update(pending.recipients)
        by_node: dict[str, set[str]] = {}
        for agent in involved:
            home = self.home_of(agent)
            if home is not None and home != self.did:
                by_node.setdefault(home, set()).add(agent)
        if not by_node:
            return
        now = self.clock()
        view = thread_to_wire(thread)
        for node, agents in by_node.items():
            entries = [
                entry_to_wire(p.entry, sorted(agents & set(p.recipients))) for p in write.entries
            ]
            grants = [
                {"agent": g.agent, "through_seq": g.through_seq}
                for g in write.grants
                if g.agent in agents
            ]
            history = _history_for(scope, thread.id, grants)
            payload = _dumps({"thread": view, "entries": history + entries, "grants": grants})
            envelope_id = f"entries:{new_message_id(now)}"
            self.store.enqueue_in(scope.transaction, envelope_id, node, payload.encode(), now)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._kick.set)

    # -- cross-node threads: member side ------------------------------------------------------

    def owner_of(self, message: Message) -> str | None:
        """The remote node owning the message's thread, or None when it is ours (or new)."""
        if message.thread is None or message.kind == "thread.create":
            return None
        owner = self.owners.get(message.thread)
        return owner if owner not in (None, self.did) else None

    async def send_envelope(self, kind: str, key: str, destination: str, payload: Any) -> None:
        """Queue ``payload`` for ``destination`` as a ``kind`` envelope (idempotent by key).

        Returns once the envelope is durably queued; the outbox delivers it.
        """
        body = _dumps(payload).encode()
        await self.store.enqueue(f"{kind}:{key}", destination, body, self.clock())
        self._kick.set()

    async def forward(self, message: Message, owner: str) -> dict[str, Any]:
        """Queue a verified local agent's message for the thread's owner node."""
        payload = _dumps({"message": to_wire(message)}).encode()
        await self.store.enqueue(f"submit:{message.id}", owner, payload, self.clock())
        self._kick.set()
        return {"message_id": message.id, "owner": owner, "queued": True}

    async def on_deliver(self, caller: str, envelope_id: str, kind: str, payload_json: str) -> bool:
        """Apply an envelope from ``caller``; True when it was a duplicate.

        Raises:
            Forbidden: the caller is banned or may not send this envelope.
            Unauthenticated: the caller is not a known peer.
            RetryLater: the envelope needs gossip this node has not seen yet.
            InvalidMessage: the envelope is malformed or of an unknown kind.
            CoralError: the coordination service or a handler refused it.
        """
        self._check_peer(caller)
        if caller not in self.state.peers:
            await self._reload_on_miss()  # the caller may have said hello to another replica
            if caller not in self.state.peers:
                raise Unauthenticated("unknown node; gossip first", reason="unknown_peer")
        self.peer_limiter.take(caller)
        payload = parse_json(payload_json)
        if not isinstance(payload, dict):
            raise InvalidMessage("an envelope payload is a JSON object", reason="invalid_envelope")
        if kind == "submit":
            return await self._deliver_submit(caller, from_wire(payload["message"]))
        if kind == "entries":
            return await self._deliver_entries(caller, envelope_id, payload)
        handler = self.handlers.get(kind)
        if handler is not None:
            return await handler(caller, envelope_id, payload)
        raise InvalidMessage(f"unknown envelope kind {kind!r}", reason="invalid_envelope")

    async def _deliver_submit(self, caller: str, message: Message) -> bool:
        if self.home_of(message.sender) != caller:
            await self._reload_on_miss()  # another replica may know the sender
            if self.home_of(message.sender) != caller:
                raise RetryLater(f"{message.sender} is not (yet) known as homed on {caller}")
        verify_message_signature(message)
        gateway = self.gateway
        if message.kind in COMMAND_KINDS:
            try:
                await gateway.seen.remember(message.id, message.created_at + COMMAND_MEMORY_MS)
            except CoralError:
                return True
        for check in gateway.checks:
            await check(message)
        try:
            await apply_command(message, self.coordination, gateway.directory)
        except (DuplicateMessage, ThreadExists):
            return True
        except CoralError as exc:
            if exc.reason in RETRYABLE_REASONS:
                raise RetryLater(exc.detail) from None
            raise
        return False

    async def _deliver_entries(
        self, caller: str, envelope_id: str, payload: dict[str, Any]
    ) -> bool:
        thread = thread_from_wire(payload["thread"])
        owner = self.owners.get(thread.id)
        if owner is None:
            if self.home_of(thread.creator) != caller:
                await self._reload_on_miss()  # another replica may know the creator
                if self.home_of(thread.creator) != caller:
                    raise RetryLater("the sender is not (yet) known as the thread's owner")
            # Replicas may race on a thread's first delivery: the first owner recorded wins.
            owner = self.owners[thread.id] = await self.store.set_thread_owner(thread.id, caller)
        if owner != caller:
            raise Forbidden("only the owner node sends a thread's entries", reason="not_owner")
        entries: list[tuple[ThreadEntry, list[str]]] = []
        for item in payload["entries"]:
            message = from_wire(item["message"])
            verify_message_signature(message)
            entry = ThreadEntry(
                thread.id, int(item["seq"]), message, int(item["recorded_at"]), bool(item["system"])
            )
            local = [a for a in item.get("recipients", []) if self.home_of(a) == self.did]
            entries.append((entry, local))
        grants = [
            HistoryGrant(g["agent"], int(g["through_seq"]))
            for g in payload.get("grants", [])
            if self.home_of(g["agent"]) == self.did
        ]
        fresh = [False]
        received_at = self.clock()

        def first_time(scope: WriteScope) -> bool:
            fresh[0] = self.store.record_inbound_in(
                scope.transaction, envelope_id, caller, received_at
            )
            return fresh[0]

        grew = await self.threads.mirror(thread, entries, grants, first_time)
        if grew is None:
            return True
        self.coordination.signals.notify(grew)
        return not fresh[0]

    # -- the outbox worker ----------------------------------------------------------

    async def run_outbox(self) -> None:
        """Deliver queued envelopes until cancelled, in order per destination.

        A destination's queue stops at its first failure (head-of-line), so a
        retried envelope is never overtaken by a later one; the failed head is
        retried after a jittered backoff the store persists. Sleeps until kicked
        or the next retry. Cancelling it between deliveries loses nothing: an
        envelope stays queued until its receiver acknowledges it.
        """
        while True:
            self._kick.clear()
            queues = await self.store.queues()
            delivered = 0
            next_due: int | None = None
            now = self.clock()
            for destination, queue in queues.items():
                head_due = queue[0].next_attempt_at
                if head_due > now:
                    next_due = head_due if next_due is None else min(next_due, head_due)
                    continue
                delivered += await self._deliver_queue(destination, queue)
            depth = sum(len(q) for q in queues.values())
            self.metrics.outbox_depth(depth - delivered)
            if delivered:
                continue
            delay = (
                5.0 if next_due is None else max(0.05, min(5.0, (next_due - self.clock()) / 1000))
            )
            try:
                await asyncio.wait_for(self._kick.wait(), delay)
            except TimeoutError:
                pass

    async def _deliver_queue(self, destination: str, queue: list[OutboxItem]) -> int:
        """Send a destination's queue as one ordered batch; returns how many were applied.

        A destination with several replicas gets the batch from the first that
        answers (an unreachable one applied nothing, so trying the next is safe).
        """
        addresses = self.addresses_of(destination)
        envelopes = [
            OutboundEnvelope(
                id=item.envelope_id,
                kind=item.envelope_id.split(":", 1)[0],
                payload_json=bytes(item.payload).decode(),
            )
            for item in queue
        ]
        applied, error = 0, ""
        try:
            if not addresses:
                raise RetryLater("no address for the destination yet")
            outcome = await self._deliver_to_any(addresses, envelopes)
            applied, error = outcome.applied, outcome.error
        except CoralError as exc:
            error = exc.detail
        if applied:
            await self.store.ack_many(destination, [i.envelope_id for i in queue[:applied]])
        if applied < len(queue):
            head = queue[applied]
            await self.store.fail(head.envelope_id, destination, self.clock(), str(error))
        return applied

    async def _deliver_to_any(
        self, addresses: list[str], envelopes: list[OutboundEnvelope]
    ) -> BatchOutcome:
        for address in addresses[:-1]:
            try:
                return await self.transport.deliver_batch(address, envelopes)
            except PeerUnreachable as exc:
                log.debug("delivery to %s failed, trying another replica: %s", address, exc)
        return await self.transport.deliver_batch(addresses[-1], envelopes)

    async def run_gossip(self, interval_s: float) -> None:
        """Say hello to bootstrap peers until they answer, and gossip every interval.

        Runs until cancelled; every round's state is in memory and the store.
        """
        pending = list(self.bootstrap)
        while True:
            for address in list(pending):
                try:
                    await self.hello(address)
                    pending.remove(address)
                except (CoralError, ValueError) as exc:
                    log.debug("bootstrap %s not reachable: %s", address, exc)
            await self.gossip_round()
            await asyncio.sleep(interval_s)


def _history_for(
    scope: WriteScope, thread_id: str, grants: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # Entries a joiner on another node must receive (the history before it joined).
    if not grants:
        return []
    through = max(int(g["through_seq"]) for g in grants)
    return [entry_to_wire(e, []) for e in scope.entries_through(thread_id, through)]
