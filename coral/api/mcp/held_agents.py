"""Agents whose Ed25519 keys the node holds on their behalf (MCP agents, A2A gateway/proxies).

Such an agent cannot sign for itself (an MCP client only knows a URL with a
secret; an external A2A agent knows nothing of Coral), so the node keeps its
key in a 0600 file and signs every record and message as that agent. Each
message still passes the gateway like any other. The connection secret is
stored only as a SHA-256 hash, mapped to the agent in the ``interop`` tables.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coral.agents.directory import AgentDirectory
from coral.agents.keyfile import load_or_create_identity
from coral.coordination.gateway import MessageGateway
from coral.coordination.model import Thread, ThreadEntry
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import check_limits, message_to_json
from coral.protocol.errors import Conflict, TooLarge, Unauthenticated
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, Part, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.store.sqlite import Migration, SqliteDatabase

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE interop_agents (
            did TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            secret_sha256 TEXT UNIQUE,
            card_url TEXT,
            created_at INTEGER NOT NULL
        );
        """,
    )
]

MCP_KIND = "mcp"
GATEWAY_KIND = "a2a-gateway"
PROXY_KIND = "a2a-proxy"


class AgentNameTaken(Conflict):
    """Another agent already uses this name in the directory."""

    reason = "agent_name_taken"


class WrongSecret(Unauthenticated):
    """The connection secret matches no agent (which agents exist is not revealed)."""

    reason = "wrong_secret"


def secret_hash(secret: str) -> str:
    """The stored form of a connection secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class HeldAgent:
    """One node-held agent: its key, its name and how it is reached."""

    identity: Identity
    name: str
    kind: str
    card_url: str | None = None

    @property
    def did(self) -> str:
        """The agent's did:key."""
        return self.identity.did


class HeldAgents:
    """Creates, finds and signs for node-held agents."""

    def __init__(
        self,
        db: SqliteDatabase,
        keys_dir: Path,
        node: Identity,
        directory: AgentDirectory,
        gateway: MessageGateway,
    ) -> None:
        self.db = db
        self.keys_dir = keys_dir
        self.node = node
        self.directory = directory
        self.gateway = gateway
        self._by_did: dict[str, HeldAgent] = {}
        #: Told the did of the agent behind every authenticated MCP request (sessions
        #: mark their agents connected this way).
        self.connection_listeners: list[Callable[[str], None]] = []

    async def open(self) -> None:
        """Create the tables; load every held agent's key."""
        await self.db.migrate("interop", MIGRATIONS)
        for row in await self.db.fetchall("SELECT did, name, kind, card_url FROM interop_agents"):
            self._remember(row["name"], row["kind"], row["card_url"])

    def _key_path(self, name: str, kind: str) -> Path:
        folder = "mcp" if kind == MCP_KIND else "a2a"
        return self.keys_dir / folder / f"{name}.key"

    def _remember(self, name: str, kind: str, card_url: str | None) -> HeldAgent:
        identity, _ = load_or_create_identity(self._key_path(name, kind))
        agent = HeldAgent(identity, name, kind, card_url)
        self._by_did[agent.did] = agent
        return agent

    async def create(
        self,
        manifest: AgentManifest,
        kind: str,
        *,
        card_url: str | None = None,
        with_secret: bool = False,
    ) -> tuple[HeldAgent, str | None]:
        """Make a key, register the agent in the directory and record it; returns its secret.

        Raises AgentNameTaken when any live agent already has the name.
        """
        if await self.directory.search(name=manifest.name):
            raise AgentNameTaken(f"an agent named {manifest.name!r} already exists")
        agent = self._remember(manifest.name, kind, card_url)
        await self.register(agent, manifest)
        secret = secrets.token_urlsafe(24) if with_secret else None
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO interop_agents(did, name, kind, secret_sha256, card_url, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    agent.did,
                    agent.name,
                    kind,
                    secret_hash(secret) if secret else None,
                    card_url,
                    now_ms(),
                ),
            )
        return agent, secret

    async def ensure(self, manifest: AgentManifest, kind: str) -> HeldAgent:
        """The held agent with this name, created (without a secret) when absent."""
        for agent in self._by_did.values():
            if agent.name == manifest.name and agent.kind == kind:
                return agent
        agent, _ = await self.create(manifest, kind)
        return agent

    async def register(self, agent: HeldAgent, manifest: AgentManifest) -> AgentRecord:
        """Sign the agent's record with its key; the directory countersigns it."""
        now = now_ms()
        version = now
        if await self.directory.is_registered(agent.did):
            version = max(now, (await self.directory.get(agent.did)).version + 1)
        record = AgentRecord(
            agent=agent.did,
            home_node=self.node.did,
            manifest=manifest,
            version=version,
            updated_at=now,
        )
        return await self.directory.register(sign_record_as_agent(record, agent.identity))

    async def retire(self, did: str) -> None:
        """Deregister a held agent (a signed ``deleted`` record), forget its secret and key.

        Its past messages stay verifiable: the public key is in its did. Used for
        session agents when their session ends.
        """
        agent = self._by_did.get(did)
        if agent is None:
            return
        if await self.directory.is_registered(did):
            current = await self.directory.get(did)
            now = now_ms()
            record = AgentRecord(
                agent=did,
                home_node=self.node.did,
                manifest=current.manifest,
                version=max(now, current.version + 1),
                updated_at=now,
                deleted=True,
            )
            await self.directory.register(sign_record_as_agent(record, agent.identity))
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM interop_agents WHERE did = ?", (did,))
        self._by_did.pop(did, None)
        self._key_path(agent.name, agent.kind).unlink(missing_ok=True)

    async def by_secret(self, secret: str) -> HeldAgent:
        """The agent this connection secret belongs to; WrongSecret otherwise."""
        row = await self.db.fetchone(
            "SELECT did FROM interop_agents WHERE secret_sha256 = ?", (secret_hash(secret),)
        )
        agent = self._by_did.get(row["did"]) if row is not None else None
        if agent is None:
            raise WrongSecret("unknown agent secret")
        for listener in self.connection_listeners:
            listener(agent.did)
        return agent

    def get(self, did: str) -> HeldAgent | None:
        """The held agent with this did, if the node holds it."""
        return self._by_did.get(did)

    def of_kind(self, kind: str) -> list[HeldAgent]:
        """Every held agent of one kind."""
        return [a for a in self._by_did.values() if a.kind == kind]

    def sign(
        self,
        agent: HeldAgent,
        *,
        kind: str = "message",
        thread: str | None = None,
        parts: Sequence[Part] = (),
        mentions: Iterable[str] = (),
    ) -> Message:
        """A message from ``agent``, signed with its key."""
        now = now_ms()
        message = Message(
            id=new_message_id(now),
            kind=kind,
            sender=agent.did,
            thread=thread,
            mentions=tuple(mentions),
            created_at=now,
            parts=tuple(parts),
        )
        return sign_message(message, agent.identity)

    async def submit(
        self,
        agent: HeldAgent,
        *,
        kind: str = "message",
        thread: str | None = None,
        text: str | None = None,
        data: object = None,
        mentions: Iterable[str] = (),
    ) -> Thread | ThreadEntry | dict[str, Any]:
        """Sign a message as ``agent`` and pass it through the gateway.

        Returns the thread, the stored entry, or (for a thread another node owns)
        the gateway's forwarding receipt.
        """
        parts: list[Part] = []
        if text is not None:
            parts.append(TextPart(text=text))
        if data is not None:
            parts.append(DataPart(data=data))
        message = self.sign(agent, kind=kind, thread=thread, parts=parts, mentions=mentions)
        return await self.submit_message(message)

    async def submit_message(self, message: Message) -> Thread | ThreadEntry | dict[str, Any]:
        """Check a signed message against the node's size limits, then pass it to the gateway.

        Messages decoded from the wire were size-checked by the codec; these are
        built in process, so the same limits are applied here (TooLarge).
        """
        limits = self.gateway.verifier.limits
        size = len(message_to_json(message))
        if size > limits.max_message_bytes:
            raise TooLarge(f"message is {size} bytes; the limit is {limits.max_message_bytes}")
        check_limits(message, limits)
        return await self.gateway.submit(message)
