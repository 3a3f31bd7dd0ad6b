"""Durable federation state in the node's SQLite file: outbox, inbox dedupe, peers,
directory, and the owners of mirrored threads (``coral.federation.ports.FederationStore``).

The outbox holds every envelope bound for another node until that node
acknowledges it, so deliveries survive restarts and partitions. Claiming an
item leases it (pushes its due time out) instead of deleting it: a crash
between claim and ack only delays the retry. The inbox table makes receipt
idempotent: a redelivered message id is recorded once.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterable

import aiosqlite

from coral.federation.peer_record import PeerRecord, parse_peer_record
from coral.federation.ports import OutboxItem, RetryPolicy
from coral.federation.records import GossipRecord
from coral.federation.retry import next_retry_ms
from coral.protocol.agent import parse_record
from coral.store.sqlite import Migration, SqliteDatabase

COMPONENT = "federation"

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE federation_outbox (
            envelope_id TEXT NOT NULL,
            destination TEXT NOT NULL,
            payload BLOB NOT NULL,
            enqueued_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            dead INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (envelope_id, destination)
        );
        CREATE INDEX federation_outbox_due ON federation_outbox (dead, next_attempt_at);
        CREATE TABLE federation_inbox (
            message_id TEXT PRIMARY KEY,
            origin TEXT NOT NULL,
            received_at INTEGER NOT NULL
        );
        CREATE INDEX federation_inbox_received ON federation_inbox (received_at);
        CREATE TABLE federation_peers (
            node TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE federation_agents (
            agent TEXT PRIMARY KEY,
            home_node TEXT NOT NULL,
            version INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            record TEXT NOT NULL
        )
        """,
    )
]


#: Which node owns each thread this node mirrors (its own component, as before).
OWNERS_COMPONENT = "federation_routing"
OWNERS_MIGRATIONS = [
    Migration(
        1, "CREATE TABLE federation_thread_owners (thread_id TEXT PRIMARY KEY, owner TEXT NOT NULL)"
    )
]

__all__ = ["FederationStore", "OutboxItem", "RetryPolicy"]

_ENQUEUE_SQL = (
    "INSERT OR IGNORE INTO federation_outbox "
    "(envelope_id, destination, payload, enqueued_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_INBOUND_SQL = (
    "INSERT OR IGNORE INTO federation_inbox (message_id, origin, received_at) VALUES (?, ?, ?)"
)


def _joined(transaction: object) -> sqlite3.Connection:
    """The SQLite connection of a transaction another store on this database opened."""
    if not isinstance(transaction, sqlite3.Connection):
        raise TypeError(f"not a SQLite transaction: {type(transaction).__name__}")
    return transaction


_OUTBOX_COLUMNS = (
    "envelope_id, destination, payload, enqueued_at, attempts, next_attempt_at, last_error"
)


def _item(row: aiosqlite.Row) -> OutboxItem:
    return OutboxItem(
        envelope_id=row["envelope_id"],
        destination=row["destination"],
        payload=bytes(row["payload"]),
        enqueued_at=row["enqueued_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
    )


class FederationStore:
    """Outbox, inbox dedupe and the persisted gossip view, on one SqliteDatabase."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.db = db
        self.rng = rng or random.Random()
        self.retry = retry or RetryPolicy()

    async def migrate(self) -> int:
        """Create or upgrade the federation tables; returns the schema version."""
        await self.db.migrate(OWNERS_COMPONENT, OWNERS_MIGRATIONS)
        return await self.db.migrate(COMPONENT, MIGRATIONS)

    async def enqueue(
        self,
        envelope_id: str,
        destination: str,
        payload: bytes,
        now_ms: int,
        conn: aiosqlite.Connection | None = None,
    ) -> bool:
        """Queue an envelope for a node, due now; False if that pair is already queued.

        Pass ``conn`` (from ``db.transaction()``) to enqueue atomically with the
        caller's own writes, e.g. appending the message to its thread.
        """
        params = (envelope_id, destination, payload, now_ms, now_ms)
        if conn is not None:
            cur = await conn.execute(_ENQUEUE_SQL, params)
            return cur.rowcount == 1
        async with self.db.transaction() as own:
            cur = await own.execute(_ENQUEUE_SQL, params)
            return cur.rowcount == 1

    def enqueue_in(
        self, transaction: object, envelope_id: str, destination: str, payload: bytes, now_ms: int
    ) -> bool:
        """``enqueue`` inside another store's open transaction on this database (synchronous).

        Raises:
            TypeError: ``transaction`` is not a SQLite connection.
        """
        params = (envelope_id, destination, payload, now_ms, now_ms)
        return _joined(transaction).execute(_ENQUEUE_SQL, params).rowcount == 1

    async def claim_due(self, now_ms: int, limit: int = 100) -> list[OutboxItem]:
        """Lease up to ``limit`` due items, oldest due first; ack or fail each one."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox "
                "WHERE dead = 0 AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at, enqueued_at LIMIT ?",
                (now_ms, limit),
            )
            items = [_item(row) for row in await cur.fetchall()]
            lease_until = now_ms + self.retry.claim_lease_ms
            await conn.executemany(
                "UPDATE federation_outbox SET next_attempt_at = ? "
                "WHERE envelope_id = ? AND destination = ?",
                [(lease_until, i.envelope_id, i.destination) for i in items],
            )
        return items

    async def ack(self, envelope_id: str, destination: str) -> bool:
        """Delivery succeeded: delete the item. False if it was not queued."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM federation_outbox WHERE envelope_id = ? AND destination = ?",
                (envelope_id, destination),
            )
            return cur.rowcount == 1

    async def ack_many(self, destination: str, envelope_ids: list[str]) -> None:
        """Delete several delivered items for one destination in one transaction."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "DELETE FROM federation_outbox WHERE envelope_id = ? AND destination = ?",
                [(e, destination) for e in envelope_ids],
            )

    async def fail(
        self, envelope_id: str, destination: str, now_ms: int, error: str = ""
    ) -> int | None:
        """Delivery failed: schedule a jittered retry and return its time, or None.

        None means the item was not queued, or it has used ``max_attempts`` and
        now sits in the dead letters for an operator to inspect.
        """
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT attempts FROM federation_outbox "
                "WHERE envelope_id = ? AND destination = ? AND dead = 0",
                (envelope_id, destination),
            )
            row = await cur.fetchone()
            if row is None:
                return None
            attempts = int(row[0]) + 1
            dead = attempts >= self.retry.max_attempts
            delay = next_retry_ms(attempts - 1, self.rng, self.retry.base_ms, self.retry.cap_ms)
            due = now_ms + delay
            await conn.execute(
                "UPDATE federation_outbox SET attempts = ?, next_attempt_at = ?, "
                "last_error = ?, dead = ? WHERE envelope_id = ? AND destination = ?",
                (attempts, due, error[:1000], int(dead), envelope_id, destination),
            )
        return None if dead else due

    async def pending(self) -> list[OutboxItem]:
        """Every live (not dead-lettered) item, soonest due first."""
        rows = await self.db.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox WHERE dead = 0 "
            "ORDER BY next_attempt_at, enqueued_at"
        )
        return [_item(r) for r in rows]

    async def queues(self, per_destination: int = 100) -> dict[str, list[OutboxItem]]:
        """Live items per destination in the order they were queued (oldest first).

        A sender that delivers each destination's queue in this order, stopping
        at the first failure, keeps every destination's deliveries in order.
        """
        rows = await self.db.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox WHERE dead = 0 "
            "ORDER BY destination, rowid"
        )
        queues: dict[str, list[OutboxItem]] = {}
        for row in rows:
            queue = queues.setdefault(row["destination"], [])
            if len(queue) < per_destination:
                queue.append(_item(row))
        return queues

    async def dead_letters(self) -> list[OutboxItem]:
        """Items that ran out of attempts."""
        rows = await self.db.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM federation_outbox WHERE dead = 1 ORDER BY enqueued_at"
        )
        return [_item(r) for r in rows]

    async def record_inbound(
        self, message_id: str, origin: str, now_ms: int, conn: aiosqlite.Connection | None = None
    ) -> bool:
        """Remember a received message id; True only the first time it is seen.

        Pass ``conn`` to make "record and deliver" one transaction, so a crash
        cannot record a message that was never delivered.
        """
        if conn is not None:
            cur = await conn.execute(_INBOUND_SQL, (message_id, origin, now_ms))
            return cur.rowcount == 1
        async with self.db.transaction() as own:
            cur = await own.execute(_INBOUND_SQL, (message_id, origin, now_ms))
            return cur.rowcount == 1

    def record_inbound_in(
        self, transaction: object, message_id: str, origin: str, now_ms: int
    ) -> bool:
        """``record_inbound`` inside another store's open transaction (synchronous).

        Raises:
            TypeError: ``transaction`` is not a SQLite connection.
        """
        cur = _joined(transaction).execute(_INBOUND_SQL, (message_id, origin, now_ms))
        return cur.rowcount == 1

    async def prune_inbox(self, received_before_ms: int) -> int:
        """Forget inbox ids older than the replay window; returns how many."""
        async with self.db.transaction() as conn:
            cur = await conn.execute(
                "DELETE FROM federation_inbox WHERE received_at < ?", (received_before_ms,)
            )
            return cur.rowcount

    async def save_records(self, records: Iterable[GossipRecord]) -> None:
        """Persist records that ``GossipState.merge`` accepted (each replaces its older self)."""
        peers, agents = [], []
        for record in records:
            text = json.dumps(record.model_dump(mode="json"), separators=(",", ":"))
            if isinstance(record, PeerRecord):
                peers.append((record.node, record.seq, text))
            else:
                agents.append(
                    (record.agent, record.home_node, record.version, int(record.deleted), text)
                )
        async with self.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO federation_peers (node, seq, record) VALUES (?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET seq = excluded.seq, record = excluded.record",
                peers,
            )
            await conn.executemany(
                "INSERT INTO federation_agents (agent, home_node, version, deleted, record) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent) DO UPDATE SET "
                "home_node = excluded.home_node, version = excluded.version, "
                "deleted = excluded.deleted, record = excluded.record",
                agents,
            )

    async def delete_peers(self, nodes: Iterable[str]) -> None:
        """Drop expired peer records."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "DELETE FROM federation_peers WHERE node = ?", [(n,) for n in nodes]
            )

    async def delete_agents(self, agents: Iterable[str]) -> None:
        """Drop purged directory entries (expired tombstones)."""
        async with self.db.transaction() as conn:
            await conn.executemany(
                "DELETE FROM federation_agents WHERE agent = ?", [(a,) for a in agents]
            )

    async def load_records(self) -> list[GossipRecord]:
        """Every persisted record, peers first; merge them to rebuild a GossipState."""
        records: list[GossipRecord] = []
        for row in await self.db.fetchall("SELECT record FROM federation_peers ORDER BY node"):
            records.append(parse_peer_record(json.loads(row[0])))
        for row in await self.db.fetchall("SELECT record FROM federation_agents ORDER BY agent"):
            records.append(parse_record(json.loads(row[0])))
        return records

    async def thread_owners(self) -> dict[str, str]:
        """Which node owns each mirrored thread (thread id -> node did)."""
        rows = await self.db.fetchall("SELECT thread_id, owner FROM federation_thread_owners")
        return {str(r[0]): str(r[1]) for r in rows}

    async def set_thread_owner(self, thread_id: str, owner: str) -> str:
        """Record ``owner`` for ``thread_id`` unless one is; returns the owner recorded."""

        def record(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO federation_thread_owners VALUES (?, ?)", (thread_id, owner)
            )
            row = conn.execute(
                "SELECT owner FROM federation_thread_owners WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            return str(row[0])

        return await self.db.write(record)
