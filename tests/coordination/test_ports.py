"""The coordination ports: SQLite, PostgreSQL and the in-memory twins behave alike.

Every test runs once per implementation: the in-memory twin and both
storage backends (``open_backend``, see ``tests/support/backends.py``); the
PostgreSQL cases skip with a reason when no server binaries are installed
(and fail under CI=true). What only a database shared by several processes
must prove is in ``tests/store/test_coordination_postgres.py``; the stores'
rows and restarts on both backends are in ``tests/store/test_coordination_stores.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from coral.coordination import rules
from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage, ThreadExists
from coral.coordination.memory import MemoryCoordinationStore, MemorySeenIds
from coral.coordination.model import InboxEntry, Thread, ThreadEntry
from coral.coordination.ports import CoordinationStore, HistoryGrant, PendingEntry, SeenIds
from coral.coordination.ports import ThreadWrite as Write
from coral.protocol.errors import Replayed
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.seen_postgres import PostgresSeenStore
from coral.store.seen_sqlite import SqliteSeenStore
from tests.support.backends import BACKENDS, OpenBackend

NOW = 1_770_000_000_000
ALICE, BOB, CAROL = (Identity.from_seed(bytes([210 + i]) * 32) for i in range(3))


IMPLEMENTATIONS = ["memory", *BACKENDS]


@pytest.fixture(params=IMPLEMENTATIONS)
async def store(request: pytest.FixtureRequest, open_backend: OpenBackend) -> CoordinationStore:
    """Each CoordinationStore in turn (PostgreSQL on a fresh schema of the session's server)."""
    if request.param == "memory":
        return MemoryCoordinationStore()
    backend = await open_backend(request.param)
    chosen: CoordinationStore = backend.pick(
        sqlite=SqliteCoordinationStore, postgresql=PostgresCoordinationStore
    )
    await chosen.migrate()
    return chosen


@pytest.fixture(params=IMPLEMENTATIONS)
async def seen(request: pytest.FixtureRequest, open_backend: OpenBackend) -> SeenIds:
    """Each SeenIds in turn."""
    if request.param == "memory":
        return MemorySeenIds()
    backend = await open_backend(request.param)
    chosen: SqliteSeenStore | PostgresSeenStore = backend.pick(
        sqlite=SqliteSeenStore, postgresql=PostgresSeenStore
    )
    await chosen.open()
    return chosen


def new_thread(thread_id: str = "t1", *, created_at: int = NOW, session: str = "s1") -> Thread:
    return rules.new_thread(
        thread_id=thread_id,
        name="port test",
        creator=ALICE.did,
        participants=[BOB.did],
        strategy="broadcast",
        strategy_options={"k": [1, 2]},
        created_at=created_at,
        session_id=session,
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
    return PendingEntry(ThreadEntry(thread.id, seq, message, NOW + seq), tuple(a.did for a in to))


async def two_entry_thread(store: CoordinationStore) -> tuple[Thread, Message, Message]:
    """Thread t1 (Alice, Bob) with "1" from Alice to Bob and "2" from Bob to Alice, naming her."""
    thread = dataclasses.replace(new_thread(), last_seq=2)
    one, two = signed(ALICE, thread.id, "1"), signed(BOB, thread.id, "2", ALICE)
    entries = (pending(thread, 1, one, BOB), pending(thread, 2, two, ALICE))
    await store.apply(Write(thread, None, entries))
    return thread, one, two


async def test_a_write_that_conflicts_leaves_nothing(store: CoordinationStore) -> None:
    thread = dataclasses.replace(new_thread(), last_seq=2)
    message = signed(ALICE, thread.id, "hi", BOB)
    twice = (pending(thread, 1, message, BOB), pending(thread, 2, message, BOB))
    with pytest.raises(DuplicateMessage):
        await store.apply(Write(thread, None, twice))
    assert await store.get_thread(thread.id) is None
    assert not await store.has_message(message.id)
    assert await store.inbox_cursor(BOB.did) == 0
    assert await store.list_threads(ALICE.did) == []


async def test_stale_writes_taken_ids_and_taken_seqs_conflict(store: CoordinationStore) -> None:
    thread, one, _ = await two_entry_thread(store)
    with pytest.raises(ThreadExists):
        await store.apply(Write(thread, None))
    moved = dataclasses.replace(thread, last_seq=3, participants=(ALICE.did,))
    three = signed(BOB, thread.id, "3")
    with pytest.raises(ConcurrentUpdate):
        await store.apply(Write(moved, 1, (pending(moved, 3, three, ALICE),)))
    with pytest.raises(ConcurrentUpdate):
        await store.apply(Write(new_thread("t-absent"), 0))
    with pytest.raises(DuplicateMessage):
        await store.apply(Write(moved, 2, (pending(moved, 3, one, ALICE),)))
    with pytest.raises(ConcurrentUpdate):
        await store.apply(Write(moved, 2, (pending(moved, 2, three, ALICE),)))
    assert await store.get_thread(thread.id) == thread
    assert not await store.has_message(three.id)
    assert await store.inbox_cursor(ALICE.did) == 1
    assert [t.id for t in await store.list_threads(BOB.did)] == [thread.id]


async def test_apply_returns_the_new_inbox_rows_with_per_agent_cursors(
    store: CoordinationStore,
) -> None:
    thread = dataclasses.replace(new_thread(), last_seq=1)
    hello = signed(ALICE, thread.id, "hello", BOB)
    delivered = await store.apply(Write(thread, None, (pending(thread, 1, hello, BOB, CAROL),)))
    assert [(d.agent, d.cursor, d.entry.seq, d.mentioned) for d in delivered] == [
        (BOB.did, 1, 1, True),
        (CAROL.did, 1, 1, False),
    ]
    again = dataclasses.replace(thread, last_seq=2)
    more = signed(ALICE, thread.id, "more")
    delivered = await store.apply(Write(again, 1, (pending(again, 2, more, BOB),)))
    assert [(d.agent, d.cursor) for d in delivered] == [(BOB.did, 2)]
    assert await store.has_message(more.id)


async def test_history_grants_come_before_new_entries(store: CoordinationStore) -> None:
    thread, _, _ = await two_entry_thread(store)
    joined = dataclasses.replace(thread, participants=(*thread.participants, CAROL.did), last_seq=3)
    welcome = signed(ALICE, thread.id, "welcome", CAROL)
    delivered = await store.apply(
        Write(joined, 2, (pending(joined, 3, welcome, BOB, CAROL),), (HistoryGrant(CAROL.did, 2),))
    )
    assert [(d.agent, d.cursor) for d in delivered] == [(BOB.did, 2), (CAROL.did, 3)]
    inbox = await store.inbox(CAROL.did, 0, 10)
    assert [(e.cursor, e.entry.seq) for e in inbox] == [(1, 1), (2, 2), (3, 3)]
    assert [e.mentioned for e in inbox] == [False, False, True]
    assert [t.id for t in await store.list_threads(CAROL.did)] == [thread.id]
    assert await store.get_thread(thread.id) == joined


async def test_inbox_filters_pages_and_reports_its_head(store: CoordinationStore) -> None:
    thread, one, two = await two_entry_thread(store)
    joined = dataclasses.replace(thread, participants=(*thread.participants, CAROL.did), last_seq=4)
    three = signed(ALICE, thread.id, "3", CAROL)
    four = signed(BOB, thread.id, "4")
    entries = (pending(joined, 3, three, CAROL), pending(joined, 4, four, CAROL))
    await store.apply(Write(joined, 2, entries, (HistoryGrant(CAROL.did, 2),)))

    def ids(page: list[InboxEntry]) -> list[str]:
        return [e.entry.message.id for e in page]

    assert ids(await store.inbox(CAROL.did, 0, 10)) == [one.id, two.id, three.id, four.id]
    assert ids(await store.inbox(CAROL.did, 1, 2)) == [two.id, three.id]
    assert ids(await store.inbox(CAROL.did, 0, 10, "mention")) == [three.id]
    assert ids(await store.inbox(CAROL.did, 0, 10, "agent", BOB.did)) == [two.id, four.id]
    assert ids(await store.inbox(CAROL.did, 2, 1, "agent", BOB.did)) == [four.id]
    assert await store.inbox(CAROL.did, 4, 10) == []
    page, head = await store.inbox_page(CAROL.did, 0, 1, "mention")
    assert ids(page) == [three.id] and head == 4
    page, head = await store.inbox_page(ALICE.did, 0, 10)
    assert ids(page) == [two.id] and head == 1
    assert await store.inbox_cursor(CAROL.did) == 4
    assert await store.inbox_cursor("did:key:nobody") == 0


async def test_history_pages_by_seq(store: CoordinationStore) -> None:
    thread, one, two = await two_entry_thread(store)
    assert [e.message for e in await store.history(thread.id, 0, 10)] == [one, two]
    assert [e.seq for e in await store.history(thread.id, 1, 10)] == [2]
    assert [e.seq for e in await store.history(thread.id, 0, 1)] == [1]
    assert await store.history(thread.id, 2, 10) == []
    assert await store.history("t-absent", 0, 10) == []
    first = (await store.history(thread.id, 0, 1))[0]
    assert (first.recorded_at, first.system, first.sender) == (NOW + 1, False, ALICE.did)


async def test_threads_are_listed_per_participant_and_session_oldest_first(
    store: CoordinationStore,
) -> None:
    for thread_id, created, session in (
        ("t-b", NOW + 5, "s1"),
        ("t-a", NOW, "s2"),
        ("t-c", NOW + 5, "s1"),
    ):
        await store.apply(Write(new_thread(thread_id, created_at=created, session=session), None))
    assert [t.id for t in await store.list_threads(BOB.did)] == ["t-a", "t-b", "t-c"]
    assert [t.id for t in await store.list_threads(BOB.did, "s1")] == ["t-b", "t-c"]
    assert await store.list_threads(CAROL.did) == []
    left = dataclasses.replace(
        await store.get_thread("t-b") or new_thread(), participants=(ALICE.did,)
    )
    await store.apply(Write(left, 0))
    assert [t.id for t in await store.list_threads(BOB.did)] == ["t-a", "t-c"]


async def test_open_threads_with_a_due_wake_time_are_due_in_order(
    store: CoordinationStore,
) -> None:
    assert await store.next_wake_at() is None
    for thread_id, wake in (("t-late", NOW + 10), ("t-b", NOW), ("t-a", NOW), ("t-never", None)):
        await store.apply(Write(dataclasses.replace(new_thread(thread_id), wake_at=wake), None))
    assert await store.due_threads(NOW - 1) == []
    assert await store.due_threads(NOW) == ["t-a", "t-b"]
    assert await store.due_threads(NOW + 10) == ["t-a", "t-b", "t-late"]
    assert await store.next_wake_at() == NOW
    for thread_id in ("t-a", "t-b"):
        current = await store.get_thread(thread_id)
        assert current is not None
        closed = dataclasses.replace(current, state="closed", closed_at=NOW)
        await store.apply(Write(closed, current.last_seq))
    assert await store.due_threads(NOW + 10) == ["t-late"]
    assert await store.next_wake_at() == NOW + 10


async def test_seen_ids_refuse_a_replay_until_pruned(seen: SeenIds) -> None:
    await seen.remember("m-1", NOW)
    await seen.remember("m-2", NOW + 10)
    with pytest.raises(Replayed):
        await seen.remember("m-1", NOW + 50)
    assert await seen.prune(NOW - 1) == 0
    assert await seen.prune(NOW) == 1  # a window ending at now is over
    await seen.remember("m-1", NOW + 50)
    with pytest.raises(Replayed):
        await seen.remember("m-2", NOW + 50)
    assert await seen.prune(NOW + 100) == 2


async def test_seen_ids_refuse_one_of_two_concurrent_remembers_of_an_id(seen: SeenIds) -> None:
    outcomes = await asyncio.gather(
        seen.remember("m-1", NOW), seen.remember("m-1", NOW), return_exceptions=True
    )
    assert sum(isinstance(o, Replayed) for o in outcomes) == 1
    assert outcomes.count(None) == 1
