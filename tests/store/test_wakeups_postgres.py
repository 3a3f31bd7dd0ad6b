"""Cross-process wake-ups on PostgreSQL: two coordination services, one database.

Each service stands for one node process (its own pool and store). Bob waits
on the second; Alice posts through the first; only the ``coordination``
NOTIFY (or, after a missed one, the catch-up every reconnect triggers) can
wake Bob's stream, which never times out on its own. A spy on the second
store tells the test when Bob's stream has looked and found nothing, so each
post lands strictly after that look. Hang guards bound every await.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity
from coral.protocol.message import Message, TextPart, new_message_id
from coral.protocol.signing import sign_message
from coral.store.coordination_postgres import PostgresCoordinationStore
from coral.store.wakeups_postgres import PostgresWakeups, read_payload, wake_payload
from tests.support.postgres import fresh_database
from tests.support.throwaway_postgres import ThrowawayPostgres

pytestmark = pytest.mark.postgres

NOW = 1_770_000_000_000
NODE, ALICE, BOB = (Identity.from_seed(bytes([240 + i]) * 32) for i in range(3))
#: Bounds every await: a broken wake-up fails here instead of hanging the suite.
HANG_GUARD_S = 60


class LookSpy(PostgresCoordinationStore):
    """The real store, announcing each inbox read (a waiter looked and is about to sleep)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.looked = asyncio.Event()

    async def inbox_page(self, *args: Any, **kwargs: Any) -> Any:
        page = await super().inbox_page(*args, **kwargs)
        self.looked.set()
        return page


@dataclass
class TwoProcesses:
    dsn: str
    writer: CoordinationService
    reader: CoordinationService
    reader_store: LookSpy


@pytest.fixture
async def two(postgres_server: ThrowawayPostgres) -> AsyncIterator[TwoProcesses]:
    dsn = await fresh_database(postgres_server, "wakeups")
    pools = [await asyncpg.create_pool(dsn, min_size=1, max_size=3) for _ in range(2)]
    first, second = PostgresCoordinationStore(pools[0]), LookSpy(pools[1])
    await first.migrate()
    await second.migrate()

    def service(store: PostgresCoordinationStore) -> CoordinationService:
        return CoordinationService(
            store,
            node_id=NODE.did,
            clock=lambda: NOW,
            sign_event=lambda message: sign_message(message, NODE),
        )

    yield TwoProcesses(dsn, service(first), service(second), second)
    for pool in pools:
        await pool.close()


def wakeups_for(two: TwoProcesses) -> PostgresWakeups:
    signals = two.reader.signals
    return PostgresWakeups(
        two.dsn,
        own_writer=two.reader_store.writer,
        wake=signals.notify,
        wake_all=signals.notify_all,
        retry_s=0.05,
    )


async def post(service: CoordinationService, thread_id: str, text: str) -> None:
    message = Message(
        id=new_message_id(NOW),
        sender=ALICE.did,
        thread=thread_id,
        mentions=(BOB.did,),
        created_at=NOW,
        parts=(TextPart(text=text),),
    )
    await service.send_message(sign_message(message, ALICE))


async def next_batch_after_post(
    two: TwoProcesses, thread_id: str, text: str, after: int
) -> tuple[list[str], int]:
    """Open a stream for Bob on the reader, let it look (and find nothing), then post.

    Returns the texts of the batch that woke the stream, and its cursor.
    """
    two.reader_store.looked.clear()
    stream = two.reader.subscribe(BOB.did, "mention", after=after)
    pending = asyncio.ensure_future(anext(stream))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await two.reader_store.looked.wait()
            await post(two.writer, thread_id, text)
            batch = await pending
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await stream.aclose()  # type: ignore[attr-defined]
    return [e.entry.message.parts[0].text for e in batch.entries], batch.cursor  # type: ignore[union-attr]


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_notices_name_the_writer_and_the_agents_or_everyone() -> None:
    assert read_payload(wake_payload("w1", ["did:a", "did:b"])) == ("w1", ["did:a", "did:b"])
    assert read_payload(wake_payload("w1", ["did:x" * 2000])) == ("w1", None)


async def test_a_post_through_one_process_wakes_a_stream_on_the_other(two: TwoProcesses) -> None:
    thread = await two.writer.create_thread(ALICE.did, "across", [BOB.did])
    wakeups = wakeups_for(two)
    listening = asyncio.create_task(wakeups.run())
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await wakeups.listening.wait()
        texts, cursor = await next_batch_after_post(two, thread.id, "one", 0)
        assert texts == ["one"]
        assert (await next_batch_after_post(two, thread.id, "two", cursor))[0] == ["two"]
    finally:
        await stopped(listening)


async def test_a_missed_notice_is_caught_up_by_cursor_on_reconnect(two: TwoProcesses) -> None:
    thread = await two.writer.create_thread(ALICE.did, "gap", [BOB.did])
    wakeups = wakeups_for(two)
    listening: asyncio.Task[None] | None = None
    # Nobody listens while Alice posts: the notice is lost for good. The
    # listener that starts afterwards wakes every wait to read by cursor.
    stream = two.reader.subscribe(BOB.did, "mention")
    pending = asyncio.ensure_future(anext(stream))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            await two.reader_store.looked.wait()
            await post(two.writer, thread.id, "while deaf")
            listening = asyncio.create_task(wakeups.run())
            batch = await pending
        assert [e.entry.message.parts[0].text for e in batch.entries] == ["while deaf"]  # type: ignore[union-attr]
    finally:
        await stream.aclose()  # type: ignore[attr-defined]

    try:
        # The server drops the LISTEN connection: the task reconnects and catches up.
        conn = await asyncpg.connect(two.dsn)
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
            )
        finally:
            await conn.close()
        texts, _ = await next_batch_after_post(two, thread.id, "after drop", batch.cursor)
        assert texts == ["after drop"]
        async with asyncio.timeout(HANG_GUARD_S):
            while wakeups.connections < 2:
                await asyncio.sleep(0.05)
    finally:
        if listening is not None:
            await stopped(listening)
