"""The SQLite coordination store: atomic writes, conflicts, and surviving restarts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coral.coordination import rules
from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.ports import HistoryGrant, PendingEntry, ThreadWrite
from coral.protocol.canonical import canonical_json
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id, to_wire
from coral.protocol.signing import sign_message, verify_message_signature
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.sqlite import SqliteDatabase

NOW = 1_770_000_000_000
ALICE, BOB, CAROL = (Identity.from_seed(bytes([200 + i]) * 32) for i in range(3))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteCoordinationStore]:
    db = SqliteDatabase(tmp_path / "coord.db")
    await db.open()
    coordination = SqliteCoordinationStore(db)
    await coordination.migrate()
    yield coordination
    await db.close()


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


async def count(store: SqliteCoordinationStore, table: str) -> int:
    row = await store.db.fetchone(f"SELECT COUNT(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def all_counts(store: SqliteCoordinationStore) -> list[int]:
    tables = ("threads", "participants", "entries", "inbox")
    return [await count(store, f"coordination_{t}") for t in tables]


async def test_migrate_is_idempotent(store: SqliteCoordinationStore) -> None:
    assert await store.migrate() == 1
    assert await store.migrate() == 1


async def test_a_failing_write_leaves_no_rows(store: SqliteCoordinationStore) -> None:
    thread = new_thread()
    message = signed(ALICE, thread.id, "hi", BOB)
    write = ThreadWrite(
        dataclasses.replace(thread, last_seq=2),
        None,
        (pending(thread, 1, message, BOB), pending(thread, 2, message, BOB)),
    )
    with pytest.raises(DuplicateMessage):
        await store.apply(write)
    assert await all_counts(store) == [0, 0, 0, 0]
    assert await store.get_thread(thread.id) is None


async def test_stale_writes_and_reused_ids_conflict(store: SqliteCoordinationStore) -> None:
    thread = dataclasses.replace(new_thread(), last_seq=1)
    first = signed(ALICE, thread.id, "one", BOB)
    await store.apply(ThreadWrite(thread, None, (pending(thread, 1, first, BOB),)))
    before = await all_counts(store)
    with pytest.raises(ThreadExists):
        await store.apply(ThreadWrite(thread, None))
    stale = dataclasses.replace(thread, last_seq=2, participants=(ALICE.did,))
    second = signed(BOB, thread.id, "two")
    with pytest.raises(ConcurrentUpdate):
        await store.apply(ThreadWrite(stale, 0, (pending(stale, 2, second, ALICE),)))
    assert await all_counts(store) == before
    assert await store.get_thread(thread.id) == thread


async def test_everything_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "restart.db"
    db = SqliteDatabase(path)
    await db.open()
    store = SqliteCoordinationStore(db)
    await store.migrate()
    thread = dataclasses.replace(
        new_thread(), last_seq=2, strategy_state={"round": 3, "spoken": [ALICE.did]}, wake_at=NOW
    )
    hello = signed(ALICE, thread.id, "hello", BOB)
    reply = signed(BOB, thread.id, "hi alice")
    entries = (pending(thread, 1, hello, BOB), pending(thread, 2, reply, ALICE))
    await store.apply(ThreadWrite(thread, None, entries))
    await db.close()

    db = SqliteDatabase(path)
    await db.open()
    store = SqliteCoordinationStore(db)
    try:
        assert await store.migrate() == 1
        assert await store.get_thread(thread.id) == thread
        history = await store.history(thread.id, 0, 10)
        assert [e.message for e in history] == [hello, reply]
        for entry in history:
            verify_message_signature(entry.message)
        row = await db.fetchone(
            "SELECT wire FROM coordination_entries WHERE message_id = ?", (hello.id,)
        )
        assert row is not None
        assert row["wire"].encode() == canonical_json(to_wire(hello))
        mentions = await store.inbox(BOB.did, 0, 10, "mention")
        assert [(e.cursor, e.entry.message.id) for e in mentions] == [(1, hello.id)]
        assert await store.inbox_cursor(ALICE.did) == 1
        assert await store.due_threads(NOW) == [thread.id]
        assert await store.due_threads(NOW - 1) == []
        assert [t.id for t in await store.list_threads(BOB.did, "s1")] == [thread.id]
    finally:
        await db.close()


async def test_history_grants_come_before_new_entries(store: SqliteCoordinationStore) -> None:
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
    participants = await store.db.fetchall(
        "SELECT agent FROM coordination_participants WHERE thread_id = ?", (thread.id,)
    )
    assert {r["agent"] for r in participants} == {ALICE.did, BOB.did, CAROL.did}
    row = await store.db.fetchone("SELECT strategy_options FROM coordination_threads")
    assert row is not None and json.loads(row[0]) == {"k": [1, 2]}
