"""The coordination store's rows on SQLite and PostgreSQL: atomic writes, conflicts, restarts.

Every test runs on both backends (the shared ``store_backend`` fixture, see
``tests/support/backends.py``). Behaviour through the port alone, with the
in-memory twin too, is in ``tests/coordination/test_ports.py``; what only a
database shared by several processes must prove is in
``tests/store/test_coordination_postgres.py``.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from coral.coordination import rules
from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.ports import CoordinationStore, HistoryGrant, PendingEntry, ThreadWrite
from coral.protocol.canonical import canonical_json
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id, to_wire
from coral.protocol.signing import sign_message, verify_message_signature
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from tests.support.backends import StoreBackend

NOW = 1_770_000_000_000
ALICE, BOB, CAROL = (Identity.from_seed(bytes([200 + i]) * 32) for i in range(3))


def coordination_store(backend: StoreBackend) -> CoordinationStore:
    return backend.pick(sqlite=SqliteCoordinationStore, postgresql=PostgresCoordinationStore)


@pytest.fixture
async def store(store_backend: StoreBackend) -> CoordinationStore:
    coordination = coordination_store(store_backend)
    await coordination.migrate()
    return coordination


def new_thread(thread_id: str = "t1") -> Thread:
    return rules.new_thread(
        thread_id=thread_id,
        name="store test",
        creator=ALICE.did,
        participants=[BOB.did],
        strategy="broadcast",
        strategy_options={"k": [1, 2]},
        created_at=NOW,
        session_id="s1",
    )


def signed(sender: Identity, thread_id: str, text: str, *mentions: Identity) -> Message:
    message = Message(
        id=new_message_id(NOW),
        sender=sender.did,
        thread=thread_id,
        mentions=tuple(m.did for m in mentions),
        created_at=NOW,
        parts=(TextPart(text=text),),
    )
    return sign_message(message, sender)


def pending(thread: Thread, seq: int, message: Message, *to: Identity) -> PendingEntry:
    return PendingEntry(ThreadEntry(thread.id, seq, message, NOW), tuple(a.did for a in to))


async def all_counts(backend: StoreBackend) -> list[int]:
    tables = ("threads", "participants", "entries", "inbox")
    return [await backend.count(f"coordination_{t}") for t in tables]


async def test_migrate_is_idempotent(store: CoordinationStore) -> None:
    assert await store.migrate() == 1
    assert await store.migrate() == 1


async def test_a_failing_write_leaves_no_rows(
    store: CoordinationStore, store_backend: StoreBackend
) -> None:
    thread = new_thread()
    message = signed(ALICE, thread.id, "hi", BOB)
    write = ThreadWrite(
        dataclasses.replace(thread, last_seq=2),
        None,
        (pending(thread, 1, message, BOB), pending(thread, 2, message, BOB)),
    )
    with pytest.raises(DuplicateMessage):
        await store.apply(write)
    assert await all_counts(store_backend) == [0, 0, 0, 0]
    assert await store.get_thread(thread.id) is None


async def test_stale_writes_and_reused_ids_conflict(
    store: CoordinationStore, store_backend: StoreBackend
) -> None:
    thread = dataclasses.replace(new_thread(), last_seq=1)
    first = signed(ALICE, thread.id, "one", BOB)
    await store.apply(ThreadWrite(thread, None, (pending(thread, 1, first, BOB),)))
    before = await all_counts(store_backend)
    with pytest.raises(ThreadExists):
        await store.apply(ThreadWrite(thread, None))
    stale = dataclasses.replace(thread, last_seq=2, participants=(ALICE.did,))
    second = signed(BOB, thread.id, "two")
    with pytest.raises(ConcurrentUpdate):
        await store.apply(ThreadWrite(stale, 0, (pending(stale, 2, second, ALICE),)))
    assert await all_counts(store_backend) == before
    assert await store.get_thread(thread.id) == thread


async def test_everything_survives_reopening(store_backend: StoreBackend) -> None:
    store = coordination_store(store_backend)
    await store.migrate()
    thread = dataclasses.replace(
        new_thread(), last_seq=2, strategy_state={"round": 3, "spoken": [ALICE.did]}, wake_at=NOW
    )
    hello = signed(ALICE, thread.id, "hello", BOB)
    reply = signed(BOB, thread.id, "hi alice")
    entries = (pending(thread, 1, hello, BOB), pending(thread, 2, reply, ALICE))
    await store.apply(ThreadWrite(thread, None, entries))

    await store_backend.reopen()  # a restart: new connections, the same data
    store = coordination_store(store_backend)
    assert await store.migrate() == 1
    assert await store.get_thread(thread.id) == thread
    history = await store.history(thread.id, 0, 10)
    assert [e.message for e in history] == [hello, reply]
    for entry in history:
        verify_message_signature(entry.message)
    wire = await store_backend.fetchval(
        "SELECT wire FROM coordination_entries WHERE message_id = ?", hello.id
    )
    assert wire.encode() == canonical_json(to_wire(hello))
    mentions = await store.inbox(BOB.did, 0, 10, "mention")
    assert [(e.cursor, e.entry.message.id) for e in mentions] == [(1, hello.id)]
    assert await store.inbox_cursor(ALICE.did) == 1
    assert await store.due_threads(NOW) == [thread.id]
    assert await store.due_threads(NOW - 1) == []
    assert [t.id for t in await store.list_threads(BOB.did, "s1")] == [thread.id]


async def test_history_grants_come_before_new_entries(
    store: CoordinationStore, store_backend: StoreBackend
) -> None:
    thread = dataclasses.replace(new_thread(), last_seq=2)
    one, two = signed(ALICE, thread.id, "1"), signed(BOB, thread.id, "2", ALICE)
    entries = (pending(thread, 1, one, BOB), pending(thread, 2, two, ALICE))
    await store.apply(ThreadWrite(thread, None, entries))
    joined = dataclasses.replace(thread, participants=(*thread.participants, CAROL.did), last_seq=3)
    welcome = signed(ALICE, thread.id, "welcome", CAROL)
    await store.apply(
        ThreadWrite(
            joined,
            2,
            (pending(joined, 3, welcome, BOB, CAROL),),
            (HistoryGrant(CAROL.did, 2),),
        )
    )
    inbox = await store.inbox(CAROL.did, 0, 10)
    assert [(e.cursor, e.entry.seq) for e in inbox] == [(1, 1), (2, 2), (3, 3)]
    assert [e.mentioned for e in inbox] == [False, False, True]
    from_bob = await store.inbox(CAROL.did, 0, 10, "agent", BOB.did)
    assert [e.entry.seq for e in from_bob] == [2]
    participants = await store_backend.fetchall(
        "SELECT agent FROM coordination_participants WHERE thread_id = ?", thread.id
    )
    assert {r["agent"] for r in participants} == {ALICE.did, BOB.did, CAROL.did}
    options = await store_backend.fetchval("SELECT strategy_options FROM coordination_threads")
    assert json.loads(options) == {"k": [1, 2]}
