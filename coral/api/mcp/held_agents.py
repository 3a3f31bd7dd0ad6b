"""Agents whose Ed25519 keys the node holds on their behalf (MCP agents, A2A gateway/proxies).

Such an agent cannot sign for itself (an MCP client only knows a URL with a
secret; an external A2A agent knows nothing of Coral), so the node keeps its
key in a 0600 file and signs every record and message as that agent. Each
message still passes the gateway like any other. The connection secret is
stored only as a SHA-256 hash, mapped to the agent by a ``HeldAgentRecords``
store (``coral.store.interop_sqlite`` in a node, ``MemoryHeldAgentRecords`` in
tests). Where the keys live is a ``HeldKeys`` port (``coral.api.mcp.held_keys``):
files under the node's keys folder (``FileHeldKeys``), or, for replicas of one
node on PostgreSQL, one shared row per agent sealed with the node key
(``coral.store.interop_postgres``), so every replica signs as the same held agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from coral.agents.directory import AgentDirectory
from coral.api.mcp.held_keys import FileHeldKeys, HeldKeys
from coral.coordination.gateway import MessageGateway
from coral.coordination.model import Thread, ThreadEntry
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import check_limits, message_to_json
from coral.protocol.errors import Conflict, TooLarge, Unauthenticated
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, Part, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message

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


@dataclass(frozen=True, slots=True)
class HeldAgentRow:
    """What is stored of a held agent (its key lives in a file under the keys folder)."""

    did: str
    name: str
    kind: str
    card_url: str | None = None


class HeldAgentRecords(Protocol):
    """Storage of the node-held agents and the hashes of their connection secrets."""

    async def all(self) -> list[HeldAgentRow]:
        """Every held agent, in no particular order."""
        ...

    async def add(self, row: HeldAgentRow, secret_sha256: str | None, created_at: int) -> None:
        """Record a held agent.

        Raises:
            Conflict: the did, the name or the secret hash is already recorded
                (reason ``held_agent_exists``); nothing is stored.
        """
        ...

    async def remove(self, did: str) -> None:
        """Forget a held agent (no-op when unknown)."""
        ...

    async def did_for_secret(self, secret_sha256: str) -> str | None:
        """The did whose connection secret hashes to ``secret_sha256``, or None."""
        ...


class MemoryHeldAgentRecords:
    """``HeldAgentRecords`` in memory: the twin fast tests use."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[HeldAgentRow, str | None]] = {}

    async def all(self) -> list[HeldAgentRow]:
        """Every held agent."""
        return [row for row, _ in self._rows.values()]

    async def add(self, row: HeldAgentRow, secret_sha256: str | None, created_at: int) -> None:
        """Record a held agent; Conflict when the did, name or secret hash is taken."""
        for held, secret in self._rows.values():
            if (
                held.did == row.did
                or held.name == row.name
                or (secret_sha256 is not None and secret == secret_sha256)
            ):
                raise Conflict(
                    f"held agent {row.name!r} is already recorded", reason="held_agent_exists"
                )
        self._rows[row.did] = (row, secret_sha256)

    async def remove(self, did: str) -> None:
        """Forget a held agent (no-op when unknown)."""
        self._rows.pop(did, None)

    async def did_for_secret(self, secret_sha256: str) -> str | None:
        """The did whose secret hashes to ``secret_sha256``, or None."""
        for row, secret in self._rows.values():
            if secret == secret_sha256:
                return row.did
        return None


class HeldAgents:
    """Creates, finds and signs for node-held agents."""

    def __init__(
        self,
        records: HeldAgentRecords,
        keys_dir: Path,
        node: Identity,
        directory: AgentDirectory,
        gateway: MessageGateway,
        keys: HeldKeys | None = None,
    ) -> None:
        self.records = records
        self.keys_dir = keys_dir
        #: The private keys: files under ``keys_dir`` unless a shared store is given.
        self.keys: HeldKeys = keys if keys is not None else FileHeldKeys(keys_dir)
        self.node = node
        self.directory = directory
        self.gateway = gateway
        self._by_did: dict[str, HeldAgent] = {}
        #: Told the did of the agent behind every authenticated MCP request (sessions
        #: mark their agents connected this way).
        self.connection_listeners: list[Callable[[str], None]] = []

    async def open(self) -> None:
        """Load every held agent's key."""
        await self.refresh()

    async def refresh(self) -> None:
        """Load the keys of held agents recorded since (by another replica, on a shared store)."""
        for row in await self.records.all():
            if row.did not in self._by_did:
                await self._remember(row.name, row.kind, row.card_url)

    async def _remember(self, name: str, kind: str, card_url: str | None) -> HeldAgent:
        identity = await self.keys.get_or_create(name, kind)
        agent = HeldAgent(identity, name, kind, card_url)
        self._by_did[agent.did] = agent
        return agent

    async def _recorded(self, did: str) -> HeldAgent | None:
        """A held agent another replica recorded after this one loaded (shared stores)."""
        for row in await self.records.all():
            if row.did == did:
                identity = await self.keys.get(row.name, row.kind)
                if identity is None or identity.did != did:
                    return None
                agent = HeldAgent(identity, row.name, row.kind, row.card_url)
                self._by_did[did] = agent
                return agent
        return None

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
        agent = await self._remember(manifest.name, kind, card_url)
        await self.register(agent, manifest)
        secret = secrets.token_urlsafe(24) if with_secret else None
        await self.records.add(
            HeldAgentRow(agent.did, agent.name, kind, card_url),
            secret_hash(secret) if secret else None,
            now_ms(),
        )
        return agent, secret

    async def ensure(self, manifest: AgentManifest, kind: str) -> HeldAgent:
        """The held agent with this name, created (without a secret) when absent.

        Replicas sharing the stores may call this at once for one name: they all
        get the one key the shared ``HeldKeys`` keeps for it, so the agent the
        other replica registered first is adopted, never replaced.

        Raises:
            AgentNameTaken: an agent that is not this held agent has the name.
        """
        for agent in self._by_did.values():
            if agent.name == manifest.name and agent.kind == kind:
                return agent
        await self.refresh()  # another replica may have made it
        for agent in self._by_did.values():
            if agent.name == manifest.name and agent.kind == kind:
                return agent
        try:
            agent, _ = await self.create(manifest, kind)
        except (AgentNameTaken, Conflict):
            adopted = await self._adopt(manifest.name, kind)
            if adopted is None:
                raise
            return adopted
        return agent

    async def _adopt(self, name: str, kind: str) -> HeldAgent | None:
        """The held agent another replica is creating under ``name``, if the key is ours too."""
        identity = await self.keys.get(name, kind)
        holders = await self.directory.search(name=name)
        if identity is None or [r.agent for r in holders] != [identity.did]:
            return None
        agent = HeldAgent(identity, name, kind)
        self._by_did[agent.did] = agent
        with contextlib.suppress(Conflict):  # the other replica recorded it first
            await self.records.add(HeldAgentRow(agent.did, name, kind), None, now_ms())
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
        agent = self._by_did.get(did) or await self._recorded(did)
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
        await self.records.remove(did)
        self._by_did.pop(did, None)
        await self.keys.forget(agent.name, agent.kind)

    async def by_secret(self, secret: str) -> HeldAgent:
        """The agent this connection secret belongs to; WrongSecret otherwise."""
        did = await self.records.did_for_secret(secret_hash(secret))
        agent = None
        if did is not None:
            agent = self._by_did.get(did) or await self._recorded(did)
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
