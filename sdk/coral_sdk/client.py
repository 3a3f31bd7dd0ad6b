"""CoralClient: an agent's signed connection to a node over HTTP/JSON.

Every write is a message signed with the agent's key; every read carries a
signed ``Authorization: Coral ...`` value. Errors from the node arrive as
``CoralApiError`` with the node's machine-readable ``reason``; a node that
cannot be reached at all raises ``NodeUnreachable``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from coral.coordination.model import HistoryPage, InboxEntry, Thread, ThreadEntry, WaitResult
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.codec import message_to_json
from coral.protocol.identity import Identity
from coral.protocol.message import (
    DataPart,
    Message,
    Part,
    PaymentRef,
    TextPart,
    new_message_id,
    now_ms,
)
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message
from coral_sdk.types import (
    Forwarded,
    NodeInfo,
    PeerInfo,
    parse_entry,
    parse_history,
    parse_inbox_entry,
    parse_thread,
    parse_wait,
)

#: What submitting a message yields: the created thread, the stored entry, or a
#: queued delivery to the node that owns the thread.
Submitted = Thread | ThreadEntry | Forwarded


class CoralApiError(Exception):
    """The node refused a call; ``reason`` is its machine-readable code."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


class NodeUnreachable(ConnectionError):
    """No node answered at ``url`` (refused, reset, unknown host); ``str()`` is one line."""

    def __init__(self, url: str, cause: BaseException) -> None:
        detail = str(cause) or type(cause).__name__
        super().__init__(
            f"node unreachable at {url} ({detail}); is it running? "
            "start one with `coral-node start`"
        )
        self.url = url
        self.cause = cause


def _unreachable(exc: aiohttp.ClientConnectionError) -> bool:
    """Whether no node answered: a refused, reset or timed-out connect, not a slow reply."""
    slow_reply = isinstance(exc, aiohttp.ServerTimeoutError) and not isinstance(
        exc, aiohttp.ConnectionTimeoutError
    )
    return not slow_reply


class CoralClient:
    """Talks to one node on behalf of one agent identity.

    Every call raises ``CoralApiError`` when the node refuses it and
    ``NodeUnreachable`` when no node answers at ``base_url``.
    """

    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout_s: float = 90.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity = identity
        self._own_session = session is None
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.node_id: str | None = None

    @property
    def did(self) -> str:
        return self.identity.did

    async def __aenter__(self) -> CoralClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: bytes = b"",
        signed: bool = True,
        content_type: str = "application/json",
    ) -> Any:
        clean = {k: str(v) for k, v in (query or {}).items() if v is not None}
        target = path + ("?" + urlencode(clean) if clean else "")
        headers = {"Content-Type": content_type} if body else {}
        if signed:
            headers["Authorization"] = sign_request(self.identity, method, target, body, now_ms())
        try:
            async with self._http().request(
                method, self.base_url + target, data=body or None, headers=headers
            ) as resp:
                payload = await resp.read()
        except aiohttp.ClientConnectionError as exc:
            if not _unreachable(exc):
                raise
            raise NodeUnreachable(self.base_url, exc) from exc
        data = json.loads(payload) if payload else None
        if resp.status >= 400:
            reason = data.get("reason", "error") if isinstance(data, dict) else "error"
            detail = data.get("detail", "") if isinstance(data, dict) else payload.decode()
            raise CoralApiError(resp.status, reason, detail)
        return data

    # -- node and directory -------------------------------------------------

    async def node_info(self) -> NodeInfo:
        """The node's signed self-description; remembers its did as ``node_id``."""
        info = NodeInfo.model_validate(await self._request("GET", "/v1/node", signed=False))
        self.node_id = info.node_id
        return info

    async def peers(self) -> list[PeerInfo]:
        """Every node this node knows, with its signed record and standing."""
        data = await self._request("GET", "/v1/peers", signed=False)
        return [PeerInfo.model_validate(peer) for peer in data["peers"]]

    async def register(self, manifest: AgentManifest, *, deleted: bool = False) -> AgentRecord:
        """Register (or update) this agent with its manifest; returns the countersigned record."""
        node_id = self.node_id or (await self.node_info()).node_id
        now = now_ms()
        version = now
        try:
            current = await self.get_agent(self.did)
            version = max(now, current.version + 1)
        except CoralApiError as exc:
            if exc.status != 404:
                raise
        record = AgentRecord(
            agent=self.did,
            home_node=node_id,
            manifest=manifest,
            version=version,
            updated_at=now,
            deleted=deleted,
        )
        signed = sign_record_as_agent(record, self.identity)
        body = json.dumps(signed.model_dump(mode="json")).encode()
        data = await self._request("POST", "/v1/agents", body=body, signed=False)
        return AgentRecord.model_validate(data)

    async def deregister(self, manifest: AgentManifest) -> AgentRecord:
        """Publish a tombstone: the agent leaves the directory everywhere."""
        return await self.register(manifest, deleted=True)

    async def get_agent(self, ref: str) -> AgentRecord:
        return AgentRecord.model_validate(
            await self._request("GET", f"/v1/agents/{ref}", signed=False)
        )

    async def list_agents(
        self, *, name: str | None = None, capability: str | None = None, all_nodes: bool = False
    ) -> list[AgentRecord]:
        query = {"name": name, "capability": capability, "all": "true" if all_nodes else None}
        data = await self._request("GET", "/v1/agents", query=query, signed=False)
        return [AgentRecord.model_validate(r) for r in data["agents"]]

    # -- writes: signed messages -------------------------------------------

    def build_message(
        self,
        *,
        kind: str = "message",
        thread: str | None = None,
        parts: Sequence[Part] = (),
        mentions: Iterable[str] = (),
        payment: PaymentRef | None = None,
        expires_in_ms: int | None = None,
    ) -> Message:
        """A message from this agent, signed and ready to submit."""
        now = now_ms()
        message = Message(
            id=new_message_id(now),
            kind=kind,
            sender=self.did,
            thread=thread,
            mentions=tuple(mentions),
            created_at=now,
            parts=tuple(parts),
            payment=payment,
            expires_at=now + expires_in_ms if expires_in_ms else None,
        )
        return sign_message(message, self.identity)

    async def submit(self, message: Message) -> Submitted:
        """Submit a signed message.

        Returns the thread a ``thread.create`` made, the stored entry of any
        other message, or a ``Forwarded`` receipt when the thread lives on
        another node and delivery is queued.
        """
        result = await self._request(
            "POST", "/v1/messages", body=message_to_json(message), signed=False
        )
        if "thread" in result:
            return parse_thread(result["thread"])
        if "forwarded" in result:
            return Forwarded.model_validate(result["forwarded"])
        return parse_entry(result["entry"])

    async def create_thread(
        self,
        name: str,
        participants: Iterable[str],
        *,
        strategy: str = "broadcast",
        strategy_options: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Thread:
        """Create a thread with these participants (dids or names); returns the thread."""
        args: dict[str, Any] = {
            "name": name,
            "participants": list(participants),
            "strategy": strategy,
        }
        if strategy_options:
            args["strategy_options"] = strategy_options
        if session_id:
            args["session_id"] = session_id
        return await self.submit_thread_create(
            self.build_message(kind="thread.create", parts=[DataPart(data=args)])
        )

    async def submit_thread_create(self, message: Message) -> Thread:
        """Submit a signed ``thread.create`` message; returns the new thread."""
        result = await self.submit(message)
        if not isinstance(result, Thread):
            raise CoralApiError(502, "unexpected_answer", f"thread.create answered {result!r}")
        return result

    async def _thread_op(
        self, kind: str, thread_id: str, args: dict[str, Any]
    ) -> Thread | Forwarded:
        result = await self.submit(
            self.build_message(kind=kind, thread=thread_id, parts=[DataPart(data=args)])
        )
        if isinstance(result, ThreadEntry):
            raise CoralApiError(502, "unexpected_answer", f"{kind} answered an entry")
        return result

    async def add_participant(self, thread_id: str, agent: str) -> Thread | Forwarded:
        """Add ``agent`` to the thread; returns the thread (or the queued delivery)."""
        return await self._thread_op("thread.add_participant", thread_id, {"agent": agent})

    async def remove_participant(self, thread_id: str, agent: str) -> Thread | Forwarded:
        """Remove ``agent`` from the thread (anyone may remove itself)."""
        return await self._thread_op("thread.remove_participant", thread_id, {"agent": agent})

    async def close_thread(self, thread_id: str, summary: str = "") -> Thread | Forwarded:
        """Close the thread with a summary; returns the closed thread."""
        return await self._thread_op("thread.close", thread_id, {"summary": summary})

    async def send(
        self,
        thread_id: str,
        text: str | None = None,
        *,
        data: Any = None,
        mentions: Iterable[str] = (),
        kind: str = "message",
        parts: Sequence[Part] = (),
        payment: PaymentRef | None = None,
    ) -> ThreadEntry | Forwarded:
        """Post to a thread; returns the stored entry (with its sequence number).

        For a thread owned by another node the node queues the message for the
        owner and the result is a ``Forwarded`` receipt.
        """
        all_parts: list[Part] = list(parts)
        if text is not None:
            all_parts.insert(0, TextPart(text=text))
        if data is not None:
            all_parts.append(DataPart(data=data))
        message = self.build_message(
            kind=kind, thread=thread_id, parts=all_parts, mentions=mentions, payment=payment
        )
        return await self.submit_to_thread(message)

    async def submit_to_thread(self, message: Message) -> ThreadEntry | Forwarded:
        """Submit a signed message for an existing thread; returns its entry (or the queued
        delivery when another node owns the thread)."""
        result = await self.submit(message)
        if isinstance(result, Thread):
            raise CoralApiError(502, "unexpected_answer", f"{message.kind} answered a thread")
        return result

    # -- reads: signed requests --------------------------------------------

    async def threads(self, session_id: str | None = None) -> list[Thread]:
        """The threads this agent takes part in (of one session, when given)."""
        data = await self._request("GET", "/v1/threads", query={"session_id": session_id})
        return [parse_thread(t) for t in data["threads"]]

    async def thread(self, thread_id: str) -> Thread:
        """One thread this agent takes part in."""
        return parse_thread(await self._request("GET", f"/v1/threads/{thread_id}"))

    async def history(self, thread_id: str, after: int = 0, limit: int = 100) -> HistoryPage:
        """The thread's log entries after sequence number ``after``, oldest first."""
        data = await self._request(
            "GET", f"/v1/threads/{thread_id}/messages", query={"after": after, "limit": limit}
        )
        return parse_history(data)

    async def wait(
        self,
        kind: str = "mention",
        *,
        from_agent: str | None = None,
        after: int = 0,
        timeout_ms: int = 30_000,
        limit: int = 100,
    ) -> WaitResult:
        """Long-poll the inbox past cursor ``after``; returns entries and the new cursor.

        Cancelling the call closes its connection; the node frees the wait and
        nothing is consumed (resume from the same cursor).
        """
        query = {
            "kind": kind,
            "from": from_agent,
            "after": after,
            "timeout_ms": timeout_ms,
            "limit": limit,
        }
        return parse_wait(self.did, await self._request("GET", "/v1/inbox", query=query))

    async def events(
        self, kind: str = "mention", *, from_agent: str | None = None, after: int = 0
    ) -> AsyncIterator[InboxEntry]:
        """Server-Sent Events of inbox entries past ``after`` (runs until cancelled)."""
        query = {
            k: str(v)
            for k, v in {"kind": kind, "from": from_agent, "after": after}.items()
            if v is not None
        }
        target = "/v1/inbox/events?" + urlencode(query)
        headers = {"Authorization": sign_request(self.identity, "GET", target, b"", now_ms())}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            response = await self._http().get(
                self.base_url + target, headers=headers, timeout=timeout
            )
        except aiohttp.ClientConnectionError as exc:
            if not _unreachable(exc):
                raise
            raise NodeUnreachable(self.base_url, exc) from exc
        async with response as resp:
            if resp.status >= 400:
                data = await resp.json(content_type=None)
                raise CoralApiError(
                    resp.status, data.get("reason", "error"), data.get("detail", "")
                )
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    yield parse_inbox_entry(self.did, json.loads(line[6:]))
