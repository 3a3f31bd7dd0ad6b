"""Shared pieces of the hardening tests: a node in a thread, state fingerprints, signing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from coral.api.lazy import LazyRoutes
from coral.config import Config
from coral.node import Node
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id, now_ms
from coral.protocol.request_auth import sign_request
from coral.protocol.signing import sign_message

T = TypeVar("T")

#: Tables whose rows change on reads or on their own schedule, not on agent writes.
VOLATILE_TABLES = frozenset({"schema_migrations"})


class ThreadedNode:
    """A real node (both servers on real sockets) whose event loop runs in a thread.

    The test keeps its own loop; the node's router, gRPC service names and data
    dir stay reachable, so routes can be enumerated rather than listed by hand.
    """

    def __init__(self, data_dir: Path, **config: Any) -> None:
        self.config = Config(data_dir=data_dir, grpc_port=0, http_port=0, **config)
        self.node = Node(self.config)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> ThreadedNode:
        self._thread.start()
        self.call(self.node.start())
        return self

    def call(self, job: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the node's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(job, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.call(self.node.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    @property
    def ctx(self) -> Any:
        assert self.node.ctx is not None
        return self.node.ctx

    @property
    def http(self) -> str:
        return str(self.ctx.http_address)

    @property
    def grpc(self) -> str:
        return str(self.ctx.grpc_address)

    @property
    def node_id(self) -> str:
        return str(self.ctx.identity.did)

    @property
    def admin_token(self) -> str:
        return str(self.ctx.admin_token)

    def http_routes(self) -> list[tuple[str, str]]:
        """Every (method, canonical path) the HTTP app serves; HEAD mirrors GET."""
        runner = self.node._http
        assert runner is not None
        routes = set()
        for route in runner.app.router.routes():
            if route.method == "HEAD" or route.resource is None:
                continue
            late = getattr(route.handler, "__self__", None)
            if isinstance(late, LazyRoutes):  # routes loaded after start (A2A, MCP, admin)
                deadline = time.monotonic() + 120
                while late.loaded_app is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert late.loaded_app is not None, "the late routes did not load"
                for inner in late.loaded_app.router.routes():
                    if inner.method != "HEAD" and inner.resource is not None:
                        routes.add((inner.method, inner.resource.canonical))
                continue
            routes.add((route.method, route.resource.canonical))
        return sorted(routes)

    def grpc_service_names(self) -> list[str]:
        return list(self.node._grpc_names)


def db_fingerprint(db_path: Path) -> dict[str, int]:
    """Row counts of every table: equal before and after means nothing was written."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if row[0] not in VOLATILE_TABLES and not row[0].startswith("sqlite_")
        ]
        return {
            name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names
        }
    finally:
        conn.close()


def settled_fingerprint(db_path: Path, timeout: float = 10.0) -> dict[str, int]:
    """A fingerprint once background side effects of earlier writes have landed.

    Some writes fan out asynchronously after the response (directory listeners
    feeding federation tables), so compare against a state that has stopped moving.
    """
    deadline = time.monotonic() + timeout
    previous = db_fingerprint(db_path)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = db_fingerprint(db_path)
        if current == previous:
            return current
        previous = current
    return previous


def agent_record(agent: Identity, node_id: str, name: str, **manifest: Any) -> AgentRecord:
    """A record signed by ``agent`` for registration at ``node_id``."""
    record = AgentRecord(
        agent=agent.did,
        home_node=node_id,
        manifest=AgentManifest(name=name, **manifest),
        version=now_ms(),
        updated_at=now_ms(),
    )
    return sign_record_as_agent(record, agent)


def record_body(record: AgentRecord) -> bytes:
    return json.dumps(record.model_dump(mode="json")).encode()


def signed_message(
    agent: Identity,
    *,
    kind: str = "message",
    thread: str | None = None,
    text: str | None = None,
    data: Any = None,
    mentions: tuple[str, ...] = (),
    created_at: int | None = None,
) -> Message:
    """A message from ``agent``, signed by it."""
    now = now_ms() if created_at is None else created_at
    parts: list[Any] = []
    if text is not None:
        parts.append(TextPart(text=text))
    if data is not None:
        parts.append(DataPart(data=data))
    message = Message(
        id=new_message_id(now),
        kind=kind,
        sender=agent.did,
        thread=thread,
        mentions=mentions,
        created_at=now,
        parts=tuple(parts),
    )
    return sign_message(message, agent)


def coral_auth(
    agent: Identity, method: str, target: str, body: bytes = b"", ts: int | None = None
) -> str:
    """A signed ``Coral`` authorization value (``ts`` overrides the clock)."""
    return sign_request(agent, method, target, body, now_ms() if ts is None else ts)


def impersonating_auth(
    signer: Identity, victim: str, method: str, target: str, body: bytes = b""
) -> str:
    """A Coral value claiming ``victim``'s did but signed by ``signer``'s key."""
    value = coral_auth(signer, method, target, body)
    return value.replace(signer.did, victim)


def tampered_auth(agent: Identity, method: str, target: str, body: bytes = b"") -> str:
    """A Coral value whose signature is someone's valid signature over other bytes."""
    good = coral_auth(agent, method, target + "x", body)
    return good
