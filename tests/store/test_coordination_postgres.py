"""PostgreSQL-only guarantees: several node processes on one database stay consistent.

Each "process" is its own pool (its own connections) on one schema. The
shared behaviour of every CoordinationStore is in the port contract tests;
these show what only a shared database has to prove: migrations apply once,
a thread's log is one total order decided by the database, and inbox
cursors stay dense and unique when writers in several processes deliver to
the same agent at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from coral.coordination import rules
from coral.coordination.errors import ConcurrentUpdate, DuplicateMessage
from coral.coordination.model import Thread, ThreadEntry
from coral.coordination.ports import PendingEntry, ThreadWrite
from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store.agents_postgres import PostgresAgentStore
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.seen_postgres import PostgresSeenStore
from tests.support.postgres import fresh_schema, schema_pool
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

NOW = 1_770_000_000_000
ALICE, BOB, CAROL = (Identity.from_seed(bytes([230 + i]) * 32) for i in range(3))


@pytest.fixture
async def two_processes(
    postgres_server: ThrowawayPostgres,
) -> AsyncIterator[list[PostgresCoordinationStore]]:
    """Two coordination stores on one schema, each with its own pool, migrated at once."""
    schema = await fresh_schema(postgres_server)
    pools = [await schema_pool(postgres_server, schema) for _ in range(2)]
    stores = [PostgresCoordinationStore(pool) for pool in pools]
    await asyncio.gather(*(store.migrate() for store in stores))
    yield stores
    for pool in pools:
        await pool.close()


def new_thread(thread_id: str) -> Thread:
    return rules.new_thread(
        thread_id=thread_id,
        name="race",
        creator=ALICE.did,
        participants=[BOB.did, CAROL.did],
        strategy="broadcast",
        strategy_options={},
        created_at=NOW,
    )


def message(thread_id: str, text: str) -> Message:
    unsigned = Message(
        id=new_message_id(NOW),
        sender=ALICE.did,
        thread=thread_id,
        created_at=NOW,
        parts=(TextPart(text=text),),
    )
    return sign_message(unsigned, ALICE)


async def append(store: PostgresCoordinationStore, thread: Thread, text: str) -> Thread:
    """One post on top of ``thread`` as the caller last read it; returns the new thread."""
    seq = thread.last_seq + 1
    entry = ThreadEntry(thread.id, seq, message(thread.id, text), NOW + seq)
    moved = dataclasses.replace(thread, last_seq=seq)
    await store.apply(ThreadWrite(moved, thread.last_seq, (PendingEntry(entry, (BOB.did,)),)))
    return moved


async def test_migrations_from_several_processes_apply_each_step_once(
    postgres_server: ThrowawayPostgres,
) -> None:
    schema = await fresh_schema(postgres_server)
    pools = [await schema_pool(postgres_server, schema, max_size=2) for _ in range(3)]
    try:
        for pool in pools:  # three node processes starting at once, then one restarting
            await asyncio.gather(
                PostgresAgentStore(pool).open(),
                PostgresSeenStore(pool).open(),
                PostgresCoordinationStore(pool).migrate(),
            )
        assert await PostgresCoordinationStore(pools[0]).migrate() == 1
        rows = await pools[0].fetch(
            "SELECT component, COUNT(*) AS steps FROM schema_migrations GROUP BY component"
        )
        assert {row["component"]: row["steps"] for row in rows} == {
            "agents": 1,
            "seen": 1,
            "coordination": 1,
        }
    finally:
        for pool in pools:
            await pool.close()


async def test_two_processes_appending_from_the_same_read_get_one_order(
    two_processes: list[PostgresCoordinationStore],
) -> None:
    first, second = two_processes
    thread = new_thread("t-race")
    await first.apply(ThreadWrite(thread, None))
    for round_no in range(12):
        current = await second.get_thread(thread.id)
        assert current is not None and current.last_seq == round_no
        outcomes = await asyncio.gather(
            append(first, current, f"first {round_no}"),
            append(second, current, f"second {round_no}"),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(refused) == 1 and isinstance(refused[0], ConcurrentUpdate), outcomes
    log = await first.history(thread.id, 0, 100)
    assert [e.seq for e in log] == list(range(1, 13))
    inbox = await second.inbox(BOB.did, 0, 100)
    assert [(e.cursor, e.entry.seq) for e in inbox] == [(n, n) for n in range(1, 13)]


async def test_concurrent_writers_in_two_processes_keep_inbox_cursors_dense(
    two_processes: list[PostgresCoordinationStore],
) -> None:
    threads = [new_thread(f"t-{n}") for n in range(6)]
    for n, thread in enumerate(threads):
        await two_processes[n % 2].apply(ThreadWrite(thread, None))

    async def post_many(store: PostgresCoordinationStore, thread: Thread) -> None:
        for n in range(5):
            thread = await append(store, thread, f"{thread.id} #{n}")

    await asyncio.gather(
        *(post_many(two_processes[n % 2], thread) for n, thread in enumerate(threads))
    )
    inbox = await two_processes[0].inbox(BOB.did, 0, 100)
    assert [e.cursor for e in inbox] == list(range(1, 31))
    assert sorted((e.entry.thread_id, e.entry.seq) for e in inbox) == sorted(
        (t.id, seq) for t in threads for seq in range(1, 6)
    )
    for thread in threads:  # each thread's entries reach the inbox in log order
        seqs = [e.entry.seq for e in inbox if e.entry.thread_id == thread.id]
        assert seqs == [1, 2, 3, 4, 5]
    assert await two_processes[1].inbox_cursor(BOB.did) == 30
    assert await two_processes[1].inbox_cursor(CAROL.did) == 0


async def test_a_refused_write_moves_neither_the_thread_nor_any_inbox_head(
    two_processes: list[PostgresCoordinationStore],
) -> None:
    store = two_processes[0]
    thread = new_thread("t-dup")
    await store.apply(ThreadWrite(thread, None))
    moved = await append(store, thread, "kept")
    taken = (await store.history(thread.id, 0, 1))[0].message
    again = ThreadEntry(thread.id, 2, taken, NOW)
    with pytest.raises(DuplicateMessage):
        await store.apply(
            ThreadWrite(
                dataclasses.replace(moved, last_seq=2), 1, (PendingEntry(again, (BOB.did,)),)
            )
        )
    assert await store.inbox_cursor(BOB.did) == 1
    assert (await store.get_thread(thread.id)) == moved


async def test_services_in_two_processes_posting_to_one_thread_all_land_in_one_order(
    two_processes: list[PostgresCoordinationStore],
) -> None:
    node = Identity.from_seed(b"\xee" * 32)
    services = [
        CoordinationService(
            store,
            node_id=node.did,
            clock=lambda: NOW,
            sign_event=lambda m: sign_message(m, node),
        )
        for store in two_processes
    ]
    thread = await services[0].create_thread(ALICE.did, "busy", [BOB.did])
    # Each lost race means another post landed, so 16 posts need at most 16 attempts
    # each (POST_ATTEMPTS is 32): every post succeeds however the races fall.
    posts = [
        services[n % 2].send_message(message(thread.id, f"post {n}"))  # alternate processes
        for n in range(16)
    ]
    entries = await asyncio.gather(*posts)
    log = await two_processes[1].history(thread.id, 0, 100)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert sorted(e.seq for e in entries) == [e.seq for e in log if not e.system]
    posted = {e.message.id for e in entries}
    assert {e.message.id for e in log if not e.system} == posted
