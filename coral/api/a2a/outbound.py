"""A2A outbound: an external A2A agent joins Coral threads through a node-held proxy agent.

Registering a card URL creates a proxy agent (node-held key, capability
``a2a-proxy``, the external agent's name and description). Messages in any
thread that mention the proxy are sent to the external agent with the
a2a-sdk client (one A2A context per Coral thread); its answer is posted back
into the thread, signed by the proxy and mentioning the asker.

Replicas of one node (shared held-agent records) each follow every proxy;
``ForwardClaims`` makes exactly one of them forward each message, and
``sync`` picks up proxies another replica made.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers.proto_helpers import get_artifact_text, get_message_text
from a2a.types import a2a_pb2
from a2a.utils.signing import SignatureVerificationError, create_signature_verifier
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWTError

from coral.api.a2a.replies import InboxFanout
from coral.api.mcp.held_agents import PROXY_KIND, HeldAgent, HeldAgents
from coral.coordination.model import InboxEntry
from coral.coordination.service import CoordinationService
from coral.protocol.agent import AgentManifest
from coral.protocol.errors import CoralError, InvalidMessage
from coral.protocol.identity import public_key_from_did
from coral.protocol.message import new_message_id

log = logging.getLogger("coral.a2a")

PROXY_CAPABILITY = "a2a-proxy"
_TIMEOUT_S = 60.0


class CardUnreachable(InvalidMessage):
    """The external agent's card could not be fetched or parsed."""

    reason = "a2a_card_unreachable"


class CardSignatureInvalid(InvalidMessage):
    """The external agent's card is signed, but no signature verifies."""

    reason = "a2a_card_signature_invalid"


def _protected_headers(card: a2a_pb2.AgentCard) -> list[dict[str, object]]:
    headers = []
    for signature in card.signatures:
        try:
            padded = signature.protected + "=" * (-len(signature.protected) % 4)
            header = json.loads(base64.urlsafe_b64decode(padded))
        except ValueError:
            continue
        if isinstance(header, dict):
            headers.append(header)
    return headers


async def _published_keys(card_url: str, card: a2a_pb2.AgentCard) -> dict[str, PyJWK]:
    """Keys named by ``jku`` on the card's own origin (a card cannot point elsewhere)."""
    origin = urlsplit(card_url)
    keys: dict[str, PyJWK] = {}
    for header in _protected_headers(card):
        jku = header.get("jku")
        if not isinstance(jku, str) or urlsplit(jku)[:2] != origin[:2]:
            continue
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(jku)
                response.raise_for_status()
                key_set = PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, PyJWTError):
            continue
        for key in key_set.keys:
            if key.key_id:
                keys[key.key_id] = key
    return keys


def _did_key(kid: str | None) -> Ed25519PublicKey | None:
    if not kid or not kid.startswith("did:key:"):
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(public_key_from_did(kid.split("#", 1)[0]))
    except (ValueError, CoralError):
        return None


async def verify_card(card_url: str, card: a2a_pb2.AgentCard) -> bool:
    """Check a card's JWS signatures (A2A 1.0 section 8.4); False when it has none.

    Keys come from a ``did:key`` ``kid`` (offline) or from the JWKS at ``jku``
    on the card's own origin. EdDSA, ES256 and RS256 are accepted.

    Raises:
        CardSignatureInvalid: the card is signed but no signature verifies.
    """
    if not card.signatures:
        return False
    published = await _published_keys(card_url, card)

    def key_for(kid: str | None, jku: str | None) -> Any:
        key = _did_key(kid) or (published.get(kid) if kid else None)
        if key is None:
            raise PyJWTError(f"no key for kid {kid!r}")
        return key

    verifier = create_signature_verifier(key_for, ["EdDSA", "ES256", "RS256"])
    try:
        verifier(card)
    except SignatureVerificationError as exc:
        raise CardSignatureInvalid(f"the A2A card at {card_url} has no valid signature") from exc
    return True


def proxy_name(card_name: str) -> str:
    """A valid Coral agent name derived from an A2A card's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", card_name.lower()).strip("-")[:32].strip("-")
    return slug or "a2a-agent"


def answer_text(task_or_message: a2a_pb2.Task | a2a_pb2.Message) -> str:
    """The text an external agent answered with (artifacts first, then status)."""
    if isinstance(task_or_message, a2a_pb2.Message):
        return get_message_text(task_or_message)
    texts = [get_artifact_text(a) for a in task_or_message.artifacts]
    if not any(texts) and task_or_message.status.HasField("message"):
        texts = [get_message_text(task_or_message.status.message)]
    return "\n".join(t for t in texts if t)


async def fetch_card(card_url: str) -> a2a_pb2.AgentCard:
    """Resolve a card from its full URL or its agent's base URL and check its signatures.

    Raises:
        CardUnreachable: the card cannot be fetched or parsed.
        CardSignatureInvalid: the card is signed and no signature verifies.
    """
    base, _, path = card_url.partition("/.well-known/")
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            resolver = A2ACardResolver(http, base)
            relative = "/.well-known/" + path if path else None
            card = await resolver.get_agent_card(relative_card_path=relative)
    except Exception as exc:
        raise CardUnreachable(f"cannot read the A2A card at {card_url}: {exc}") from None
    if not await verify_card(card_url, card):
        log.info("the A2A card at %s is not signed", card_url)
    return card


class ForwardClaims(Protocol):
    """Which replica forwards a proxy's inbox entry: the first to claim it."""

    async def claim(self, agent: str, cursor: int) -> bool:
        """True for the one caller that claims ``agent``'s inbox entry ``cursor`` first."""
        ...


class A2AProxies:
    """The node's proxy agents for external A2A agents."""

    def __init__(
        self,
        held: HeldAgents,
        engine: CoordinationService,
        *,
        claims: ForwardClaims | None = None,
    ) -> None:
        """``claims``: with replicas, so that one of them forwards each message."""
        self.held = held
        self.engine = engine
        self.claims = claims
        self._fanouts: dict[str, InboxFanout] = {}
        self._cards: dict[str, a2a_pb2.AgentCard] = {}

    async def start(self) -> None:
        """Resume forwarding for every proxy created earlier."""
        for agent in self.held.of_kind(PROXY_KIND):
            await self._follow(agent)

    async def sync(self) -> None:
        """Follow the proxies another replica made since (shared held-agent records)."""
        await self.held.refresh()
        await self.start()

    async def stop(self) -> None:
        """Stop forwarding."""
        for fanout in self._fanouts.values():
            await fanout.stop()
        self._fanouts.clear()

    async def add(self, card_url: str, name: str | None = None) -> HeldAgent:
        """Register a proxy for the agent whose card is at ``card_url``."""
        card = await fetch_card(card_url)
        manifest = AgentManifest(
            name=name or proxy_name(card.name),
            description=(card.description or f"A2A agent at {card_url}")[:4096],
            capabilities=(PROXY_CAPABILITY,),
            endpoints=("a2a",),
        )
        agent, _ = await self.held.create(manifest, PROXY_KIND, card_url=card_url)
        self._cards[agent.did] = card
        await self._follow(agent)
        return agent

    async def _follow(self, agent: HeldAgent) -> None:
        if agent.did in self._fanouts:
            return

        async def forward(item: InboxEntry) -> None:
            await self._forward(agent, item)

        fanout = InboxFanout(self.engine, agent.did, on_unrouted=forward)
        await fanout.start()
        self._fanouts[agent.did] = fanout

    async def _forward(self, agent: HeldAgent, item: InboxEntry) -> None:
        entry = item.entry
        message = entry.message
        if entry.system or message.sender == agent.did or agent.did not in message.mentions:
            return
        if self.claims is not None and not await self.claims.claim(agent.did, item.cursor):
            return  # another replica forwards this one
        try:
            answer = await asyncio.wait_for(
                self.ask(agent, entry.thread_id, message.text()), _TIMEOUT_S
            )
        except (Exception, TimeoutError) as exc:  # report to the thread rather than vanish
            log.warning("A2A proxy %s: forwarding failed: %s", agent.name, exc)
            answer = f"error: the external A2A agent did not answer ({type(exc).__name__})"
        try:
            await self.held.submit(
                agent, thread=entry.thread_id, text=answer, mentions=[message.sender]
            )
        except CoralError as exc:
            log.warning("A2A proxy %s: posting the answer failed: %s", agent.name, exc.detail)

    async def ask(self, agent: HeldAgent, thread_id: str, text: str) -> str:
        """Send ``text`` to the external agent (context = the thread); return its answer."""
        card = self._cards.get(agent.did)
        if card is None:
            assert agent.card_url is not None
            card = self._cards[agent.did] = await fetch_card(agent.card_url)
        async with httpx.AsyncClient(timeout=_TIMEOUT_S) as http:
            client = await create_client(card, ClientConfig(streaming=False, httpx_client=http))
            request = a2a_pb2.SendMessageRequest(
                message=a2a_pb2.Message(
                    message_id=new_message_id(),
                    role=a2a_pb2.Role.ROLE_USER,
                    context_id=thread_id,
                    parts=[a2a_pb2.Part(text=text)],
                )
            )
            answer = ""
            async for event in client.send_message(request):
                payload = event.WhichOneof("payload")
                if payload == "task":
                    answer = answer_text(event.task) or answer
                elif payload == "message":
                    answer = answer_text(event.message)
            await client.close()
            return answer
