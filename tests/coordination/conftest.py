"""Shared fixtures: deterministic identities, a controllable clock, services over the
in-memory store twin or a real SQLite file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coral.coordination.memory import MemoryCoordinationStore
from coral.coordination.model import ThreadEntry
from coral.coordination.registry import StrategyRegistry
from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.sqlite import SqliteDatabase

START_MS = 1_770_000_000_000


class FakeClock:
    """Unix milliseconds that only move when a test says so."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def agents() -> list[Identity]:
    return [Identity.from_seed(bytes([i + 1]) * 32) for i in range(6)]


@pytest.fixture(scope="session")
def node_identity() -> Identity:
    return Identity.from_seed(b"\x99" * 32)


async def open_service(
    path: Path,
    clock: Callable[[], int],
    node: Identity,
    registry: StrategyRegistry | None = None,
    **kwargs: Any,
) -> tuple[SqliteDatabase, CoordinationService]:
    """A service over the SQLite file at ``path`` (created or reopened)."""
    db = SqliteDatabase(path)
    await db.open()
    store = SqliteCoordinationStore(db)
    await store.migrate()
    service = CoordinationService(
        store, node_id=node.did, clock=clock, strategies=registry, **kwargs
    )
    return db, service


@pytest.fixture
def service(clock: FakeClock, node_identity: Identity) -> CoordinationService:
    """A service over the in-memory store twin (domain logic only).

    The twin passes the same port contract as SQLite (``test_ports.py``); tests
    that restart a node use ``open_service`` on a real SQLite file.
    """
    return CoordinationService(MemoryCoordinationStore(), node_id=node_identity.did, clock=clock)


def make_message(
    sender: Identity,
    thread_id: str | None,
    *,
    text: str | None = "hello",
    data: Any = None,
    mentions: tuple[Identity, ...] = (),
    created_at: int = START_MS,
) -> Message:
    """A signed message from ``sender`` to ``thread_id``."""
    parts: list[TextPart | DataPart] = []
    if text is not None:
        parts.append(TextPart(text=text))
    if data is not None:
        parts.append(DataPart(data=data))
    message = Message(
        id=new_message_id(created_at),
        sender=sender.did,
        thread=thread_id,
        mentions=tuple(m.did for m in mentions),
        created_at=created_at,
        parts=tuple(parts),
    )
    return sign_message(message, sender)


async def post(
    service: CoordinationService, sender: Identity, thread_id: str, **kwargs: Any
) -> ThreadEntry:
    """Sign and send a message; return the stored entry."""
    return await service.send_message(make_message(sender, thread_id, **kwargs))


def events_named(entries: Any, name: str) -> list[dict[str, Any]]:
    """The data of the node events called ``name`` among ``entries``."""
    found = []
    for entry in entries:
        if entry.system and entry.message.kind == f"coral.{name}":
            found.append(entry.message.data()[0])
    return found
