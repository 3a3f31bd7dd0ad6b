"""Federation state on PostgreSQL, shared by every replica of one node (``FederationStore``).

The same tables as ``coral.store.federation_sqlite``: the outbox (each
envelope until its receiver acknowledges it, with persisted, jittered
backoff and dead letters), the inbox dedupe of received envelope ids, the
persisted gossip view (peer records and the agent directory) and the owner of
each mirrored thread.

Replicas share these rows, and each keeps a copy of the gossip view and the
thread owners in memory, so every change here is announced: a ``federation``
NOTIFY, sent inside the writing transaction (PostgreSQL delivers it only if
that commits), names what changed, and ``PostgresFederationWatch`` on every
other replica reads it back or wakes its outbox worker. Notices are hints:
after any (re)connect the watch re-reads everything.

``enqueue_in`` and ``record_inbound_in`` join a coordination write's
transaction through ``coral.store.postgres.DeferredStatements``: they add
their statements, which the coordination store runs on its own connection
before it commits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg

from coral.federation.peer_record import PeerRecord, parse_peer_record
from coral.federation.ports import OutboxItem, RetryPolicy
from coral.federation.records import GossipRecord
from coral.federation.retry import next_retry_ms
from coral.protocol.agent import parse_record
from coral.store.listen_postgres import PostgresListener, Subscription, follow
from coral.store.postgres import PostgresMigration, joined, migrate

log = logging.getLogger(__name__)

COMPONENT = "federation"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE federation_outbox (
            envelope_id TEXT NOT NULL,
            destination TEXT NOT NULL,
            queued_order BIGINT GENERATED ALWAYS AS IDENTITY,
            payload BYTEA NOT NULL,
            enqueued_at BIGINT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            dead BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (envelope_id, destination)
        );
        CREATE INDEX federation_outbox_due ON federation_outbox (dead, next_attempt_at);
        CREATE INDEX federation_outbox_queues ON federation_outbox (destination, queued_order)
            WHERE NOT dead;
        CREATE TABLE federation_inbox (
            message_id TEXT PRIMARY KEY,
            origin TEXT NOT NULL,
            received_at BIGINT NOT NULL
        );
        CREATE INDEX federation_inbox_received ON federation_inbox (received_at);
        CREATE TABLE federation_peers (
            node TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE federation_agents (
            agent TEXT PRIMARY KEY,
            home_node TEXT NOT NULL,
            version BIGINT NOT NULL,
            deleted BOOLEAN NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE federation_thread_owners (
            thread_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL
        );
        """,
    )
]

#: The NOTIFY channel of federation changes.
CHANNEL = "federation"
#: Notice kinds: the outbox grew; gossip records changed; a thread's owner was recorded.
OUTBOX, RECORDS, OWNER = "outbox", "records", "owner"
#: PostgreSQL refuses payloads of 8000 bytes or more; past this a notice names no records.
_MAX_PAYLOAD = 7900
#: Prefixes of record keys in a ``records`` notice: a peer's node id, an agent's id.
_PEER, _AGENT = "p:", "a:"

#: Queue one envelope and, when it was new, announce it: one round trip, one row back.
_ENQUEUE_SQL = (
    "WITH queued AS (INSERT INTO federation_outbox"
    " (envelope_id, destination, payload, enqueued_at, next_attempt_at)"
    " VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT 1 FROM (SELECT pg_notify($5, $6) FROM queued) AS announced"
)
_INBOUND_SQL = (
    "INSERT INTO federation_inbox (message_id, origin, received_at) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING RETURNING 1"
)
_NOTIFY_SQL = "SELECT pg_notify($1, $2)"
_OUTBOX_COLUMNS = (
    "envelope_id, destination, payload, enqueued_at, attempts, next_attempt_at, last_error"
)


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        envelope_id=row["envelope_id"],
        destination=row["destination"],
        payload=bytes(row["payload"]),
        enqueued_at=int(row["enqueued_at"]),
        attempts=int(row["attempts"]),
        next_attempt_at=int(row["next_attempt_at"]),
        last_error=row["last_error"],
    )


def _dumps(record: GossipRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), separators=(",", ":"))


class PostgresFederationStore:
    """Outbox, inbox dedupe, gossip view and thread owners on a shared PostgreSQL pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._pool = pool
        self.rng = rng or random.Random()
        self.retry = retry or RetryPolicy()
        #: This store's token in notices, so a replica skips the ones it sent.
        self.writer = secrets.token_hex(8)

    def _notice(self, kind: str, *fields: str) -> str:
        return "\n".join([self.writer, kind, *fields])

    async def migrate(self) -> int:
        """Create or upgrade the federation tables (once, under an advisory lock)."""
        return await migrate(self._pool, COMPONENT, MIGRATIONS)

    # -- the outbox ------------------------------------------------------------------

    async def enqueue(
        self, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """Queue an envelope for a node, due now; False if that pair is already queued."""
        async with self._pool.acquire() as conn:
            queued = await conn.fetchval(
                _ENQUEUE_SQL,
                envelope_id,
                destination,
                payload,
                now_ms,
                CHANNEL,
                self._notice(OUTBOX),
            )
        return queued is not None

    def enqueue_in(
        self, transaction: object, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """``enqueue`` inside a PostgreSQL write's transaction (``DeferredStatements``).

        The insert runs when the write runs its deferred statements, so this
        returns True before knowing: a pair already queued is left as it was.

        Raises:
            TypeError: ``transaction`` is not a PostgreSQL write's statement collector.
        """
        joined(transaction).add(
            _ENQUEUE_SQL, envelope_id, destination, payload, now_ms, CHANNEL, self._notice(OUTBOX)
        )
        return True

    async def claim_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        """Lease up to ``limit`` due items, oldest due first; ack or fail each one.

        Items another replica is claiming at the same moment are skipped, not waited for.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "WITH due AS (SELECT envelope_id, destination, next_attempt_at AS was_due"
                " FROM federation_outbox WHERE NOT dead AND next_attempt_at <= $1"
                " ORDER BY next_attempt_at, enqueued_at, queued_order LIMIT $3"
                " FOR UPDATE SKIP LOCKED)"
                " UPDATE federation_outbox o SET next_attempt_at = $2 FROM due"
                " WHERE o.envelope_id = due.envelope_id AND o.destination = due.destination"
                " RETURNING o.envelope_id, o.destination, o.payload, o.enqueued_at, o.attempts,"
                " due.was_due AS next_attempt_at, o.last_error, o.queued_order",
                now_ms,
                now_ms + self.retry.claim_lease_ms,
                limit,
            )
        rows = sorted(
            rows,
            key=lambda r: (
                int(r["next_attempt_at"]),
                int(r["enqueued_at"]),
                int(r["queued_order"]),
            ),
        )
        return [_item(r) for r in rows]

    async def ack(self, envelope_id: str, destination: str) -> bool:
        """Delivery succeeded: delete the item. False if it was not queued."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM federation_outbox WHERE envelope_id = $1 AND destination = $2",
                envelope_id,
                destination,
            )
        return str(status) == "DELETE 1"

    async def ack_many(self, destination: str, envelope_ids: list[str]) -> None:
        """Delete several delivered items for one destination at once."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM federation_outbox WHERE destination = $1"
                " AND envelope_id = ANY($2::text[])",
                destination,
                envelope_ids,
            )

    async def fail(
        self, envelope_id: str, destination: str, now_ms: int, error: str = ""
    ) -> int | None:
        """Delivery failed: schedule a jittered retry and return its time, or None.

        None means the item was not queued, or it has used ``max_attempts`` and
        now sits in the dead letters for an operator to inspect.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                "SELECT attempts FROM federation_outbox"
                " WHERE envelope_id = $1 AND destination = $2 AND NOT dead FOR UPDATE",
                envelope_id,
                destination,
            )
            if attempts is None:
                return None
            attempts = int(attempts) + 1
            dead = attempts >= self.retry.max_attempts
            delay = next_retry_ms(attempts - 1, self.rng, self.retry.base_ms, self.retry.cap_ms)
            due = now_ms + delay
            await conn.execute(
                "UPDATE federation_outbox SET attempts = $3, next_attempt_at = $4,"
                " last_error = $5, dead = $6 WHERE envelope_id = $1 AND destination = $2",
                envelope_id,
                destination,
                attempts,
                due,
                error[:1000],
                dead,
            )
        return None if dead else due

    async def pending(self) -> list[OutboxItem]:
        """Every live (not dead-lettered) item, soonest due first."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox WHERE NOT dead"
                " ORDER BY next_attempt_at, enqueued_at, queued_order"
            )
        return [_item(r) for r in rows]

    async def queues(self, per_destination: int = 100) -> dict[str, list[OutboxItem]]:
        """Live items per destination in the order they were queued (oldest first).

        Writes to one thread queue in the order they commit (the thread row
        lock orders them), so each destination sees a thread's entries in order.
        """
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLUMNS} FROM ("
                f" SELECT {_OUTBOX_COLUMNS}, queued_order, row_number() OVER"
                " (PARTITION BY destination ORDER BY queued_order) AS position"
                " FROM federation_outbox WHERE NOT dead) q"
                ' WHERE position <= $1 ORDER BY destination COLLATE "C", queued_order',
                per_destination,
            )
        queues: dict[str, list[OutboxItem]] = {}
        for row in rows:
            queues.setdefault(row["destination"], []).append(_item(row))
        return queues

    async def dead_letters(self) -> list[OutboxItem]:
        """Items that ran out of attempts."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox WHERE dead"
                " ORDER BY enqueued_at, queued_order"
            )
        return [_item(r) for r in rows]

    # -- the inbox dedupe ---------------------------------------------------------------

    async def record_inbound(self, message_id: str, origin: str, now_ms: int) -> bool:
        """Remember a received message id; True only the first time it is seen."""
        async with self._pool.acquire() as conn:
            fresh = await conn.fetchval(_INBOUND_SQL, message_id, origin, now_ms)
        return fresh is not None

    def record_inbound_in(
        self, transaction: object, message_id: str, origin: str, now_ms: int
    ) -> bool:
        """``record_inbound`` inside a PostgreSQL write's transaction, as its guard.

        The insert runs when the write runs its deferred statements; an id
        seen before makes the write a repeat that changes nothing (the write
        reports it), so this returns True before knowing.

        Raises:
            TypeError: ``transaction`` is not a PostgreSQL write's statement collector.
        """
        joined(transaction).add(_INBOUND_SQL, message_id, origin, now_ms, guard=True)
        return True

    async def prune_inbox(self, received_before_ms: int) -> int:
        """Forget inbox ids older than the replay window; returns how many."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM federation_inbox WHERE received_at < $1", received_before_ms
            )
        return int(str(status).split()[-1])

    # -- the gossip view ------------------------------------------------------------------

    async def save_records(self, records: Iterable[GossipRecord]) -> None:
        """Persist records the gossip state accepted (each replaces its older self).

        A record only replaces a stored one it outranks (peer ``seq``, agent
        ``version``), so two replicas saving concurrently keep the newer.
        """
        peers: list[tuple[str, int, str]] = []
        agents: list[tuple[str, str, int, bool, str]] = []
        for record in records:
            if isinstance(record, PeerRecord):
                peers.append((record.node, record.seq, _dumps(record)))
            else:
                agents.append(
                    (record.agent, record.home_node, record.version, record.deleted, _dumps(record))
                )
        if not peers and not agents:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            if peers:
                await conn.executemany(
                    "INSERT INTO federation_peers (node, seq, record) VALUES ($1, $2, $3)"
                    " ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, record = excluded.record"
                    " WHERE federation_peers.seq <= excluded.seq",
                    peers,
                )
            if agents:
                await conn.executemany(
                    "INSERT INTO federation_agents (agent, home_node, version, deleted, record)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent) DO UPDATE SET"
                    " home_node = excluded.home_node, version = excluded.version,"
                    " deleted = excluded.deleted, record = excluded.record"
                    " WHERE federation_agents.version <= excluded.version",
                    agents,
                )
            keys = [_PEER + p[0] for p in peers] + [_AGENT + a[0] for a in agents]
            notice = self._notice(RECORDS, *keys)
            if len(notice.encode()) > _MAX_PAYLOAD:
                notice = self._notice(RECORDS)  # too many to name: "reload everything"
            await conn.execute(_NOTIFY_SQL, CHANNEL, notice)

    async def delete_peers(self, nodes: Iterable[str]) -> None:
        """Drop peer records (expired or retired)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM federation_peers WHERE node = ANY($1::text[])", list(nodes)
            )

    async def delete_agents(self, agents: Iterable[str]) -> None:
        """Drop purged directory entries (expired tombstones)."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM federation_agents WHERE agent = ANY($1::text[])", list(agents)
            )

    async def load_records(self) -> list[GossipRecord]:
        """Every persisted record, peers first; merge them to rebuild a GossipState."""
        async with self._pool.acquire() as conn:
            peers = await conn.fetch(
                'SELECT record FROM federation_peers ORDER BY node COLLATE "C"'
            )
            agents = await conn.fetch(
                'SELECT record FROM federation_agents ORDER BY agent COLLATE "C"'
            )
        records: list[GossipRecord] = [parse_peer_record(json.loads(r[0])) for r in peers]
        return records + [parse_record(json.loads(r[0])) for r in agents]

    async def load_named(self, keys: Iterable[str]) -> list[GossipRecord]:
        """The persisted records a ``records`` notice named (``p:<node>``, ``a:<agent>``)."""
        named = list(keys)
        nodes = [k[len(_PEER) :] for k in named if k.startswith(_PEER)]
        agent_ids = [k[len(_AGENT) :] for k in named if k.startswith(_AGENT)]
        async with self._pool.acquire() as conn:
            peers = await conn.fetch(
                "SELECT record FROM federation_peers WHERE node = ANY($1::text[])", nodes
            )
            agents = await conn.fetch(
                "SELECT record FROM federation_agents WHERE agent = ANY($1::text[])", agent_ids
            )
        records: list[GossipRecord] = [parse_peer_record(json.loads(r[0])) for r in peers]
        return records + [parse_record(json.loads(r[0])) for r in agents]

    # -- thread owners ------------------------------------------------------------------

    async def thread_owners(self) -> dict[str, str]:
        """Which node owns each mirrored thread (thread id -> node did)."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT thread_id, owner FROM federation_thread_owners")
        return {str(r[0]): str(r[1]) for r in rows}

    async def set_thread_owner(self, thread_id: str, owner: str) -> str:
        """Record ``owner`` for ``thread_id`` unless one is; returns the owner recorded."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO federation_thread_owners (thread_id, owner) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                thread_id,
                owner,
            )
            if inserted is None:
                recorded = await conn.fetchval(
                    "SELECT owner FROM federation_thread_owners WHERE thread_id = $1", thread_id
                )
                return str(recorded)
            await conn.execute(_NOTIFY_SQL, CHANNEL, self._notice(OWNER, thread_id, owner))
        return owner


class PostgresFederationWatch:
    """LISTEN for other replicas' federation changes and apply them here (run until cancelled).

    ``on_outbox`` runs when another replica queued envelopes (the leader's
    outbox worker wakes), ``on_owner(thread, owner)`` when one recorded a
    thread's owner, and ``on_records(records)`` with the records a notice
    named, read back from ``store``. ``on_reload`` (re-read everything) runs
    after every (re)connect, so a notice missed while disconnected loses
    nothing, and for a notice too large to name its records. Reads run one at
    a time; notices that arrive meanwhile fold into the next read. It LISTENs
    on a connection of its own (``dsn``) or on the process's shared
    ``listener`` (pass ``None`` as ``dsn``).
    """

    def __init__(
        self,
        dsn: str | None,
        store: PostgresFederationStore,
        *,
        on_outbox: Callable[[], None],
        on_owner: Callable[[str, str], None],
        on_records: Callable[[list[GossipRecord]], None],
        on_reload: Callable[[], Awaitable[None]],
        retry_s: float = 1.0,
        listener: PostgresListener | None = None,
    ) -> None:
        if (dsn is None) == (listener is None):
            raise ValueError("give exactly one of dsn and listener")
        self._dsn = dsn
        self._listener = listener
        self._store = store
        self._on_outbox = on_outbox
        self._on_owner = on_owner
        self._on_records = on_records
        self._on_reload = on_reload
        self._retry_s = retry_s
        self._changed = asyncio.Event()
        self._named: set[str] = set()
        self._everything = False
        #: Set while a LISTEN connection is up (tests wait on it).
        self.listening = asyncio.Event()

    def _connected(self) -> None:
        self.listening.set()
        # Whatever committed before LISTEN took effect was never announced to us.
        self._everything = True
        self._changed.set()
        self._on_outbox()

    def _on_notice(self, conn: object, pid: int, channel: str, payload: str) -> None:
        writer, kind, *fields = payload.split("\n")
        if writer == self._store.writer:
            return  # this replica applied its own change already
        if kind == OUTBOX:
            self._on_outbox()
        elif kind == OWNER and len(fields) == 2:
            self._on_owner(fields[0], fields[1])
        elif kind == RECORDS:
            if fields:
                self._named.update(fields)
            else:
                self._everything = True
            self._changed.set()

    async def run(self) -> None:
        """Listen and apply changes until cancelled, reconnecting after a lost connection.

        Cancellation closes the connection (or leaves the shared listener) and
        propagates; connection and read failures are logged and retried every
        ``retry_s`` seconds.
        """
        reader = asyncio.ensure_future(self._reads())
        try:
            sub = Subscription(CHANNEL, self._on_notice, self._connected, self.listening.clear)
            await follow(sub, self._listener, self._dsn, self._retry_s)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _reads(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            everything, named = self._everything, self._named
            self._everything, self._named = False, set()
            try:
                if everything:
                    await self._on_reload()
                elif named:
                    self._on_records(await self._store.load_named(named))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("federation re-read failed: %s; retrying", exc)
                self._everything = True
                await asyncio.sleep(self._retry_s)
                self._changed.set()
