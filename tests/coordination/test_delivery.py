"""Waits served from memory after a commit: in order, never skipping, falling back to the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coral.coordination import waiting
from coral.coordination.errors import DuplicateMessage
from coral.coordination.model import WaitResult
from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity

from .conftest import make_message, post


class CountingReads:
    """Counts inbox reads on the store (everything else passes through).

    ``finished`` is set when a read has returned: a wait that found nothing goes
    from there to waiting on its wake-up event without yielding to the loop, so
    once the test resumes after ``finished`` the wait is blocked (see ``blocked``).
    """

    def __init__(self, service: CoordinationService) -> None:
        self.reads = 0
        self.finished = asyncio.Event()
        store = service.store
        real = store.inbox_page

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            try:
                return await real(*args, **kwargs)
            finally:
                self.finished.set()

        store.inbox_page = counted  # type: ignore[method-assign]

    async def blocked(self, service: CoordinationService, agent: str) -> None:
        """Return once ``agent``'s one wait has read the (empty) inbox and sleeps."""
        await asyncio.wait_for(self.finished.wait(), 10)
        assert service.signals.active_waits(agent) == 1


async def take(stream: AsyncIterator[WaitResult], count: int) -> list[str]:
    """Message ids of the next ``count`` entries the subscription yields."""
    ids: list[str] = []
    while len(ids) < count:
        batch = await asyncio.wait_for(anext(stream), 5)
        ids += [item.entry.message.id for item in batch.entries]
    return ids


async def test_subscription_gets_posts_from_memory_after_its_first_read(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    after = await service.inbox_cursor(b.did)
    reads = CountingReads(service)
    stream = service.subscribe(b.did, "mention", after=after)
    first = asyncio.ensure_future(anext(stream))
    await reads.blocked(service, b.did)  # the subscription read the (empty) inbox and waits
    assert reads.reads == 1
    sent = [(await post(service, a, thread.id, mentions=(b,))).message.id for _ in range(5)]
    got = [item.entry.message.id for item in (await asyncio.wait_for(first, 5)).entries]
    got += await take(stream, 5 - len(got))
    assert got == sent
    assert reads.reads == 1  # every post came from memory
    await stream.aclose()
    assert service.signals.active_waits(b.did) == 0


async def test_filtered_out_entries_keep_the_memory_path_contiguous(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    reads = CountingReads(service)
    stream = service.subscribe(b.did, "mention", after=await service.inbox_cursor(b.did))
    pending = asyncio.ensure_future(take(stream, 2))
    await reads.blocked(service, b.did)
    await post(service, a, thread.id, text="not for b")
    one = await post(service, a, thread.id, mentions=(b,))
    await post(service, a, thread.id, text="also not for b")
    two = await post(service, a, thread.id, mentions=(b,))
    assert await pending == [one.message.id, two.message.id]
    assert reads.reads == 1
    await stream.aclose()


async def test_a_joiner_with_history_falls_back_to_the_store_and_misses_nothing(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did])
    before = [(await post(service, a, thread.id)).message.id for _ in range(3)]
    history = [e.message.id for e in (await service.history(a.did, thread.id)).entries]
    reads = CountingReads(service)
    stream = service.subscribe(c.did, "message", after=await service.inbox_cursor(c.did))
    # The whole history so far, the "joined" event, then the next post.
    pending = asyncio.ensure_future(take(stream, len(history) + 2))
    await reads.blocked(service, c.did)  # c's subscription is waiting before it joins
    await service.add_participant(a.did, thread.id, c.did)  # history grant + joined event
    after = (await post(service, a, thread.id)).message.id
    got = await pending
    assert got[: len(history)] == history and history[-3:] == before
    assert got[-1] == after and len(got) == len(set(got))
    await stream.aclose()


async def test_a_slow_consumer_beyond_the_memory_cap_reads_the_store_in_order(
    service: CoordinationService, agents: list[Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "MAX_PENDING", 3)
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    reads = CountingReads(service)
    stream = service.subscribe(b.did, "message", after=await service.inbox_cursor(b.did))
    first = asyncio.ensure_future(anext(stream))
    await reads.blocked(service, b.did)  # the posts below overflow a waiting subscription
    sent = [(await post(service, a, thread.id)).message.id for _ in range(10)]
    got = [item.entry.message.id for item in (await asyncio.wait_for(first, 5)).entries]
    got += await take(stream, 10 - len(got))
    assert got == sent
    await stream.aclose()


async def test_blocked_waits_return_memory_deliveries_with_the_right_cursor(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    cursor = await service.inbox_cursor(b.did)
    reads = CountingReads(service)
    waiting_task = asyncio.create_task(service.wait(b.did, "mention", after=cursor))
    await reads.blocked(service, b.did)
    sent = await post(service, a, thread.id, mentions=(b,))
    result = await asyncio.wait_for(waiting_task, 5)
    assert [e.entry.message.id for e in result.entries] == [sent.message.id]
    assert reads.reads == 1  # the blocked wait was handed the post from memory
    # The cursor is the stored one: resuming from it finds nothing new.
    again = await service.wait(b.did, "mention", after=result.cursor, timeout_ms=1)
    assert again.timed_out and result.cursor == result.entries[0].cursor


async def test_a_duplicate_post_is_refused_by_the_write_and_leaves_one_entry(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    message = make_message(a, thread.id)
    await service.send_message(message)
    with pytest.raises(DuplicateMessage):
        await service.send_message(message)
    page = await service.history(a.did, thread.id)
    assert [e.message.id for e in page.entries].count(message.id) == 1
    # The thread as cached after the refused write is still the stored one.
    assert (await service.get_thread(a.did, thread.id)).last_seq == page.entries[-1].seq


async def test_a_wait_loop_resumes_from_memory_and_a_changed_filter_reads_the_store(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    reads = CountingReads(service)
    cursor = await service.inbox_cursor(b.did)
    first = await service.wait(b.did, "mention", after=cursor, timeout_ms=1)
    assert first.timed_out and reads.reads == 1
    plain = await post(service, a, thread.id, text="no mention")
    sent = await post(service, a, thread.id, mentions=(b,))
    # The same loop's next wait (same filter, from the returned cursor): from memory.
    second = await service.wait(b.did, "mention", after=first.cursor, timeout_ms=1000)
    assert [e.entry.message.id for e in second.entries] == [sent.message.id]
    assert reads.reads == 1
    # A different filter must not trust what the mention wait skipped: it reads the store.
    every = await service.wait(b.did, "message", after=first.cursor, timeout_ms=1000)
    assert [e.entry.message.id for e in every.entries] == [plain.message.id, sent.message.id]
    assert reads.reads == 2
    assert service.signals.active_waits(b.did) == 0
