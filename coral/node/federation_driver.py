"""The I/O driver of federation: gossip rounds, cross-node threads, the outbox.

``coral.federation`` decides (records, digests, routes); this module moves
bytes. Cross-node threads: the creator's home node owns a thread and orders
its log. Every write to an owned thread that touches agents homed elsewhere
queues, in the same SQLite transaction, one ``entries`` envelope per remote
node; those nodes mirror the entries and fill their own agents' inboxes. An
agent posting to a thread owned elsewhere has its signed message forwarded
to the owner as a ``submit`` envelope. The outbox retries with jittered
backoff until the receiver acknowledges; receivers drop duplicates by
message id, so agents see every message exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

from coral.api.context import NodeContext, need
from coral.api.grpc.federation import node_auth_metadata
from coral.api.views import entry_view, thread_view
from coral.coordination.commands import COMMAND_KINDS, apply_command
from coral.coordination.errors import DuplicateMessage, ThreadExists
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.ports import HistoryGrant, ThreadWrite
from coral.coordination.ratelimit import RateLimiter
from coral.federation import (
    GossipConfig,
    GossipState,
    PeerAddresses,
    PeerBanned,
    PeerRecord,
    issue_peer_record,
    parse_peer_record,
)
from coral.federation.errors import ExpiredPeerRecord
from coral.federation.wire import (
    digest_from_wire,
    digest_to_wire,
    record_from_wire,
    record_to_wire,
    request_from_wire,
    request_to_wire,
)
from coral.node.keys import load_node_handover
from coral.protocol.agent import AgentRecord
from coral.protocol.canonical import parse_json
from coral.protocol.errors import CoralError, Forbidden, InvalidMessage, Unauthenticated
from coral.protocol.message import Message, from_wire, new_message_id, now_ms, to_wire
from coral.protocol.signing import verify_message_signature
from coral.store.federation_sqlite import FederationStore
from coral.store.sqlite import Migration, SqliteDatabase
from coral.v1 import federation_pb2, federation_pb2_grpc

log = logging.getLogger("coral.federation")

OWNERS_MIGRATIONS = [
    Migration(
        1, "CREATE TABLE federation_thread_owners (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL)"
    )
]
CALL_TIMEOUT_S = 5.0
#: Errors a receiver may resolve by itself later (gossip lag): worth retrying.
RETRYABLE_REASONS = {"agent_not_registered", "thread_not_found"}


EnvelopeHandler = Callable[[str, str, dict[str, Any]], Awaitable[bool]]


class RetryLater(CoralError):
    reason = "retry_later"
    category = "unavailable"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def thread_from_view(view: dict[str, Any]) -> Thread:
    """Rebuild a Thread from its JSON view (what an owner sends its mirrors)."""
    return Thread(
        id=view["id"],
        name=view["name"],
        creator=view["creator"],
        participants=tuple(view["participants"]),
        strategy=view["strategy"],
        created_at=int(view["created_at"]),
        session_id=view.get("session_id"),
        state=view["state"],
        summary=view.get("summary"),
        closed_at=view.get("closed_at"),
        strategy_options=view.get("strategy_options") or {},
        strategy_state=view.get("strategy_state") or {},
        last_seq=int(view["last_seq"]),
    )


class FederationNode:
    """One node's federation: its GossipState, outbox worker and peer channels."""

    def __init__(self, ctx: NodeContext, db: SqliteDatabase, bootstrap: Iterable[str]) -> None:
        self.ctx = ctx
        self.db = db
        self.did = ctx.identity.did
        ttl_ms = int(ctx.config.peer_record_ttl_s * 1000)
        self.state = GossipState(
            self.did, rng=random.Random(), config=GossipConfig(peer_record_ttl_ms=ttl_ms)
        )
        self.store = FederationStore(db)
        self.bootstrap = list(bootstrap)
        self.owners: dict[str, str] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.peer_limiter = RateLimiter(500.0, 1000.0, lambda: asyncio.get_running_loop().time())
        #: Envelope kinds other subsystems handle (e.g. cross-node payments):
        #: ``handler(caller_node, envelope_id, payload) -> duplicate``.
        self.handlers: dict[str, EnvelopeHandler] = {}

    # -- start-up ----------------------------------------------------------------

    async def open(self) -> None:
        """Load the persisted view and hook into the coordination store."""
        self._loop = asyncio.get_running_loop()
        await self.store.migrate()
        await self.db.migrate("federation_routing", OWNERS_MIGRATIONS)
        rows = await self.db.fetchall("SELECT thread_id, owner FROM federation_thread_owners")
        self.owners = {str(r[0]): str(r[1]) for r in rows}
        now = now_ms()
        loaded = self.state.merge(await self.store.load_records(), now)
        expired = [
            r.node
            for r, reason in loaded.rejected
            if isinstance(r, PeerRecord) and reason == ExpiredPeerRecord.reason
        ]
        if expired:  # peers that went quiet while this node was down
            await self.store.delete_peers(expired)
        assert self.ctx.directory is not None
        local = await self.ctx.directory.search(local_only=True, include_deleted=True)
        self.state.merge(local, now)
        store = need(self.ctx.coordination_store, "coordination_store")
        store.write_hooks.append(self._fanout_hook)
        self.ctx.directory.listeners.append(self._on_local_record)

    def publish_self(self) -> None:
        """(Re)issue our signed peer record with the addresses we listen on."""
        addresses = PeerAddresses(grpc=self.ctx.grpc_address, http=self.ctx.http_address)
        previous = load_node_handover(self.ctx.config.keys_dir, self.ctx.identity)
        record = issue_peer_record(self.ctx.identity, addresses, now_ms(), previous=previous)
        self.state.merge([record], now_ms())

    def _on_local_record(self, record: AgentRecord) -> None:
        if record.home_node != self.did:
            return  # replicated records arrive through gossip already
        self.state.merge([record], now_ms())
        asyncio.get_running_loop().create_task(self.store.save_records([record]))

    # -- peers and channels --------------------------------------------------------

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return channel

    def _stub(self, address: str) -> federation_pb2_grpc.FederationServiceStub:
        return federation_pb2_grpc.FederationServiceStub(self._channel(address))

    def address_of(self, node: str) -> str | None:
        peer = self.state.peers.get(node)
        return peer.addresses.grpc if peer is not None else None

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _call(self, address: str, method: str, request: Any) -> Any:
        stub = self._stub(address)
        metadata = node_auth_metadata(self.ctx.identity, method, request)
        return await getattr(stub, method)(request, metadata=metadata, timeout=CALL_TIMEOUT_S)

    # -- gossip, client side --------------------------------------------------------

    async def hello(self, address: str) -> str | None:
        """Introduce ourselves to ``address``; returns the peer's did when it answers."""
        own = self.state.peers[self.did]
        request = federation_pb2.HelloRequest(peer_record_json=_dumps(own.model_dump(mode="json")))
        response = await self._call(address, "Hello", request)
        record = parse_peer_record(parse_json(response.peer_record_json))
        await self._merge([record], source=None)
        return record.node

    async def gossip_round(self) -> None:
        """One push-pull round with this round's chosen peers.

        First keeps the peer table fresh: re-issues our own record when a
        third of its TTL has passed, and forgets peers whose records expired.
        """
        now = now_ms()
        if self.state.refresh_due(now):
            self.publish_self()
        expired = self.state.purge_expired_peers(now)
        if expired:
            log.info("forgot %d peer(s) whose records expired: %s", len(expired), expired)
            await self.store.delete_peers(expired)
        for peer in self.state.choose_gossip_targets(now_ms()):
            address = self.address_of(peer)
            if address is None:
                continue
            try:
                await self.exchange_with(peer, address)
            except (grpc.aio.AioRpcError, CoralError, ValueError) as exc:
                log.debug("gossip with %s failed: %s", peer, exc)
        self.ctx.metrics.gossip_rounds.inc()
        self.ctx.metrics.peers.set(max(0, len(self.state.peers) - 1))

    async def exchange_with(self, peer: str, address: str) -> None:
        hashes = federation_pb2.GossipHashesRequest(bucket_hashes=list(self.state.bucket_hashes()))
        digest_response = await self._call(address, "GossipHashes", hashes)
        if not digest_response.digest_json:
            return
        diff = self.state.diff(digest_from_wire(parse_json(digest_response.digest_json)))
        request = federation_pb2.GossipExchangeRequest(
            records_json=_dumps([record_to_wire(r) for r in diff.to_send]),
            request_json=_dumps(request_to_wire(diff.request)),
        )
        response = await self._call(address, "GossipExchange", request)
        records = [record_from_wire(r) for r in parse_json(response.records_json)]
        await self._merge(records, source=peer)

    async def _merge(self, records: list[Any], source: str | None) -> None:
        try:
            result = self.state.merge(records, now_ms(), source=source)
        except PeerBanned:
            return
        for _record, reason in result.rejected:
            self.ctx.metrics.rejections.labels("federation", reason).inc()
            log.info("refused gossip record from %s: %s", source, reason)
        if result.retired:
            log.info("node ids retired by a key hand-over: %s", result.retired)
            await self.store.delete_peers(result.retired)
        if not result.accepted:
            return
        await self.store.save_records(result.accepted)
        assert self.ctx.directory is not None
        for record in result.accepted:
            if isinstance(record, AgentRecord) and record.home_node != self.did:
                try:
                    await self.ctx.directory.merge_remote(record)
                except CoralError as exc:
                    log.info("directory refused %s: %s", record.agent, exc.detail)

    # -- gossip, server side ---------------------------------------------------------

    async def on_hello(self, caller: str, peer_record_json: str) -> str:
        record = parse_peer_record(parse_json(peer_record_json))
        if record.node != caller:
            self.state.scores.penalize(caller, 10.0, now_ms())
            raise Forbidden("a node may only introduce itself", reason="peer_impersonation")
        await self._merge([record], source=caller)
        return _dumps(self.state.peers[self.did].model_dump(mode="json"))

    def _check_peer(self, caller: str) -> None:
        if self.state.scores.is_banned(caller, now_ms()):
            raise Forbidden("this node is banned for misbehaving", reason="peer_banned")

    def on_gossip_hashes(self, caller: str, hashes: list[int]) -> str:
        self._check_peer(caller)
        buckets = self.state.differing_buckets(hashes)
        if not buckets:
            return ""
        return _dumps(digest_to_wire(self.state.make_digest(buckets)))

    async def on_gossip_exchange(self, caller: str, records_json: str, request_json: str) -> str:
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
        record = self.state.agents.get(agent)
        return None if record is None or record.deleted else record.home_node

    def _fanout_hook(self, conn: sqlite3.Connection, write: ThreadWrite) -> None:
        # Runs on the database thread inside the write's transaction.
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
        now = now_ms()
        view = thread_view(thread)
        for node, agents in by_node.items():
            entries = [
                {**entry_view(p.entry), "recipients": sorted(agents & set(p.recipients))}
                for p in write.entries
            ]
            grants = [
                {"agent": g.agent, "through_seq": g.through_seq}
                for g in write.grants
                if g.agent in agents
            ]
            history = _history_for(conn, thread.id, grants)
            payload = _dumps({"thread": view, "entries": history + entries, "grants": grants})
            conn.execute(
                "INSERT OR IGNORE INTO federation_outbox (envelope_id, destination, payload,"
                " enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                (f"entries:{new_message_id(now)}", node, payload.encode(), now, now),
            )
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
        """Queue ``payload`` for ``destination`` as a ``kind`` envelope (idempotent by key)."""
        body = _dumps(payload).encode()
        await self.store.enqueue(f"{kind}:{key}", destination, body, now_ms())
        self._kick.set()

    async def forward(self, message: Message, owner: str) -> dict[str, Any]:
        """Queue a verified local agent's message for the thread's owner node."""
        payload = _dumps({"message": to_wire(message)}).encode()
        await self.store.enqueue(f"submit:{message.id}", owner, payload, now_ms())
        self._kick.set()
        return {"message_id": message.id, "owner": owner, "queued": True}

    async def on_deliver(self, caller: str, envelope_id: str, kind: str, payload_json: str) -> bool:
        """Apply an envelope from ``caller``; True when it was a duplicate."""
        self._check_peer(caller)
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
            raise RetryLater(f"{message.sender} is not (yet) known as homed on {caller}")
        verify_message_signature(message)
        gateway = self.ctx.gateway
        assert gateway is not None and self.ctx.coordination is not None
        if message.kind in COMMAND_KINDS:
            seen = gateway.seen
            try:
                await seen.remember(message.id, message.created_at + 10 * 24 * 3600 * 1000)
            except CoralError:
                return True
        for check in gateway.checks:
            await check(message)
        try:
            await apply_command(message, self.ctx.coordination, gateway.directory)
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
        thread = thread_from_view(payload["thread"])
        owner = self.owners.get(thread.id)
        if owner is None:
            if self.home_of(thread.creator) != caller:
                raise RetryLater("the sender is not (yet) known as the thread's owner")
            await self.db.write(
                lambda c: c.execute(
                    "INSERT OR IGNORE INTO federation_thread_owners VALUES (?, ?)",
                    (thread.id, caller),
                )
            )
            self.owners[thread.id] = caller
        elif owner != caller:
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
        store = need(self.ctx.coordination_store, "coordination_store")
        fresh = [False]

        def first_time(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO federation_inbox (message_id, origin, received_at)"
                " VALUES (?, ?, ?)",
                (envelope_id, caller, now_ms()),
            )
            fresh[0] = cur.rowcount == 1
            return fresh[0]

        grew = await store.mirror(thread, entries, grants, first_time)
        engine = self.ctx.coordination
        assert engine is not None
        engine.signals.notify(grew)
        return not fresh[0]

    # -- the outbox worker ----------------------------------------------------------

    async def run_outbox(self) -> None:
        """Deliver queued envelopes until cancelled, in order per destination.

        A destination's queue stops at its first failure (head-of-line), so a
        retried envelope is never overtaken by a later one; the failed head is
        retried after a jittered backoff. Sleeps until kicked or the next retry.
        """
        while True:
            self._kick.clear()
            queues = await self.store.queues()
            delivered = 0
            next_due: int | None = None
            now = now_ms()
            for destination, queue in queues.items():
                head_due = queue[0].next_attempt_at
                if head_due > now:
                    next_due = head_due if next_due is None else min(next_due, head_due)
                    continue
                delivered += await self._deliver_queue(destination, queue)
            depth = sum(len(q) for q in queues.values())
            self.ctx.metrics.outbox_depth.set(depth - delivered)
            if delivered:
                continue
            delay = 5.0 if next_due is None else max(0.05, min(5.0, (next_due - now_ms()) / 1000))
            try:
                await asyncio.wait_for(self._kick.wait(), delay)
            except TimeoutError:
                pass

    async def _deliver_queue(self, destination: str, queue: list[Any]) -> int:
        """Send a destination's queue as one ordered batch; returns how many were applied."""
        address = self.address_of(destination)
        batch = federation_pb2.EnvelopeBatch(
            envelopes=[
                federation_pb2.Envelope(
                    id=item.envelope_id,
                    kind=item.envelope_id.split(":", 1)[0],
                    payload_json=bytes(item.payload).decode(),
                )
                for item in queue
            ]
        )
        applied, error = 0, ""
        try:
            if address is None:
                raise RetryLater("no address for the destination yet")
            response = await self._call(address, "DeliverBatch", batch)
            applied, error = response.applied, response.error
        except (grpc.aio.AioRpcError, CoralError) as exc:
            error = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else exc.detail
        if applied:
            await self.store.ack_many(destination, [i.envelope_id for i in queue[:applied]])
        if applied < len(queue):
            head = queue[applied]
            await self.store.fail(head.envelope_id, destination, now_ms(), str(error))
        return applied

    async def run_gossip(self, interval_s: float) -> None:
        """Say hello to bootstrap peers until they answer, and gossip every interval."""
        pending = list(self.bootstrap)
        while True:
            for address in list(pending):
                try:
                    await self.hello(address)
                    pending.remove(address)
                except (grpc.aio.AioRpcError, CoralError, ValueError) as exc:
                    log.debug("bootstrap %s not reachable: %s", address, exc)
            await self.gossip_round()
            await asyncio.sleep(interval_s)


def _history_for(
    conn: sqlite3.Connection, thread_id: str, grants: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # Entries a joiner on another node must receive (the history before it joined).
    if not grants:
        return []
    through = max(int(g["through_seq"]) for g in grants)
    rows = conn.execute(
        "SELECT seq, system, recorded_at, wire FROM coordination_entries"
        " WHERE thread_id = ? AND seq <= ? ORDER BY seq",
        (thread_id, through),
    ).fetchall()
    return [
        {
            "thread_id": thread_id,
            "seq": int(r[0]),
            "system": bool(r[1]),
            "recorded_at": int(r[2]),
            "message": json.loads(r[3]),
            "recipients": [],
        }
        for r in rows
    ]
