"""Node-held agents on PostgreSQL: their records and their keys, shared by every replica.

``PostgresHeldAgentRecords`` is ``coral.api.mcp.held_agents.HeldAgentRecords``
on the tables of ``coral.store.interop_sqlite``. ``PostgresHeldKeys`` keeps the
held agents' private keys (``HeldKeys``) in the database, so that replicas of
one node sign as the same held agent instead of each making its own key. Each
seed is sealed (ChaCha20-Poly1305) under a key derived from the node's own
key, which every replica has (the same node key file) and the database does
not: a copy of the database alone reveals no agent's key.
``PostgresForwardClaims`` lets one replica forward each message an A2A proxy
receives (``coral.api.a2a.outbound.ForwardClaims``).
"""

from __future__ import annotations

import os

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coral.api.mcp.held_agents import HeldAgentRow
from coral.protocol.errors import Conflict, CoralError
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.store.postgres import PostgresMigration, migrate

COMPONENT = "interop"

MIGRATIONS = [
    PostgresMigration(
        1,
        """
        CREATE TABLE interop_agents (
            did TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            secret_sha256 TEXT UNIQUE,
            card_url TEXT,
            created_at BIGINT NOT NULL
        );
        CREATE TABLE interop_keys (
            name TEXT PRIMARY KEY,
            did TEXT NOT NULL,
            sealed BYTEA NOT NULL
        );
        CREATE TABLE interop_forwarded (
            agent TEXT NOT NULL,
            cursor BIGINT NOT NULL,
            claimed_at BIGINT NOT NULL,
            PRIMARY KEY (agent, cursor)
        );
        CREATE INDEX interop_forwarded_age ON interop_forwarded (claimed_at);
        """,
    )
]

#: HKDF ``info`` of the key that seals held agents' seeds.
SEALING_INFO = b"coral/v1/held-agent-keys"
_NONCE_BYTES = 12


class HeldKeyUnreadable(CoralError):
    """A stored held-agent key does not open with this node's key (another node's database?)."""

    reason = "held_key_unreadable"
    category = "internal"


class PostgresHeldAgentRecords:
    """``HeldAgentRecords`` on a shared PostgreSQL pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def open(self) -> None:
        """Create or upgrade the tables (once, under an advisory lock)."""
        await migrate(self._pool, COMPONENT, MIGRATIONS)

    async def all(self) -> list[HeldAgentRow]:
        """Every held agent."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch("SELECT did, name, kind, card_url FROM interop_agents")
        return [HeldAgentRow(r["did"], r["name"], r["kind"], r["card_url"]) for r in rows]

    async def add(self, row: HeldAgentRow, secret_sha256: str | None, created_at: int) -> None:
        """Record a held agent.

        Raises:
            Conflict: the did, name or secret hash is taken (``held_agent_exists``).
        """
        try:
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO interop_agents (did, name, kind, secret_sha256, card_url,"
                    " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    row.did,
                    row.name,
                    row.kind,
                    secret_sha256,
                    row.card_url,
                    created_at,
                )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"held agent {row.name!r} is already recorded", reason="held_agent_exists"
            ) from None

    async def remove(self, did: str) -> None:
        """Forget a held agent (no-op when unknown)."""
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM interop_agents WHERE did = $1", did)

    async def did_for_secret(self, secret_sha256: str) -> str | None:
        """The did whose connection secret hashes to ``secret_sha256``, or None."""
        async with self._pool.acquire() as conn:
            did = await conn.fetchval(
                "SELECT did FROM interop_agents WHERE secret_sha256 = $1", secret_sha256
            )
        return str(did) if did is not None else None


class PostgresHeldKeys:
    """``HeldKeys`` in the database, sealed under the node key (see the module docstring).

    Uses the ``interop`` component's tables: open ``PostgresHeldAgentRecords`` first.
    """

    def __init__(self, pool: asyncpg.Pool, node: Identity) -> None:
        self._pool = pool
        sealing_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=SEALING_INFO
        ).derive(node.seed)
        self._aead = ChaCha20Poly1305(sealing_key)

    def _seal(self, name: str, identity: Identity) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, identity.seed, name.encode())

    def _open(self, name: str, sealed: bytes) -> Identity:
        try:
            seed = self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], name.encode())
        except InvalidTag:
            raise HeldKeyUnreadable(
                f"the stored key of held agent {name!r} was sealed by another node key"
            ) from None
        return Identity.from_seed(seed)

    async def get_or_create(self, name: str, kind: str) -> Identity:
        """The shared key of ``name``; the first replica to store one decides it.

        Raises:
            HeldKeyUnreadable: the stored key was sealed under another node key.
        """
        fresh = Identity.generate()
        async with self._pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO interop_keys (name, did, sealed) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                fresh.did,
                self._seal(name, fresh),
            )
            # A separate statement: its snapshot sees the row that won a conflict.
            sealed = await conn.fetchval("SELECT sealed FROM interop_keys WHERE name = $1", name)
        return self._open(name, bytes(sealed))

    async def get(self, name: str, kind: str) -> Identity | None:
        """The shared key of ``name``, or None.

        Raises:
            HeldKeyUnreadable: the stored key was sealed under another node key.
        """
        async with self._pool.acquire() as conn:
            sealed = await conn.fetchval("SELECT sealed FROM interop_keys WHERE name = $1", name)
        return self._open(name, bytes(sealed)) if sealed is not None else None

    async def forget(self, name: str, kind: str) -> None:
        """Delete the key of ``name``."""
        async with self._pool.acquire() as conn:
            await conn.execute("DELETE FROM interop_keys WHERE name = $1", name)


class PostgresForwardClaims:
    """``ForwardClaims`` on a shared pool: one row per forwarded inbox entry.

    Uses the ``interop`` component's tables: open ``PostgresHeldAgentRecords`` first.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim(self, agent: str, cursor: int) -> bool:
        """True for the first caller to claim ``agent``'s entry ``cursor``."""
        async with self._pool.acquire() as conn:
            won = await conn.fetchval(
                "INSERT INTO interop_forwarded (agent, cursor, claimed_at)"
                " VALUES ($1, $2, $3) ON CONFLICT (agent, cursor) DO NOTHING RETURNING 1",
                agent,
                cursor,
                now_ms(),
            )
        return won is not None

    async def prune(self, before_ms: int) -> int:
        """Forget claims made before ``before_ms`` (their entries were read long ago)."""
        async with self._pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM interop_forwarded WHERE claimed_at < $1", before_ms
            )
        return int(status.split()[-1])
