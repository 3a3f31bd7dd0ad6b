"""Waiting for mentions, messages and agents: immediate, woken, timed out, resumed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from coral.coordination.errors import InvalidWait, TooManyWaits
from coral.coordination.service import CoordinationService
from coral.protocol.identity import Identity

from .conftest import FakeClock, open_service, post


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds (a hang guard, not a speed claim)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


async def test_wait_returns_existing_entries_immediately(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    sent = await post(service, a, thread.id, mentions=(b,))
    result = await service.wait(b.did, "mention", timeout_ms=60_000)
    assert [e.entry.message.id for e in result.entries] == [sent.message.id]
    assert result.cursor == result.entries[-1].cursor
    assert result.entries[0].mentioned and not result.timed_out


async def test_sender_does_not_receive_its_own_message(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    start = await service.inbox_cursor(a.did)
    await post(service, a, thread.id)
    result = await service.wait(a.did, "message", after=start, timeout_ms=1)
    assert result.timed_out and result.cursor == start


async def test_blocked_wait_is_woken_by_a_new_message(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    cursor = await service.inbox_cursor(b.did)
    waiting = asyncio.create_task(service.wait(b.did, "mention", after=cursor, timeout_ms=60_000))
    await until(lambda: service.signals.active_waits(b.did) == 1)
    assert not waiting.done()
    await post(service, a, thread.id, text="no mention")
    sent = await post(service, a, thread.id, mentions=(b,))
    result = await asyncio.wait_for(waiting, 5)
    # Had the plain message satisfied the mention wait, the wait would have
    # returned it (alone or first) instead of exactly the mention.
    assert [e.entry.message.id for e in result.entries] == [sent.message.id]


async def test_wait_times_out_with_the_same_cursor(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    await service.create_thread(a.did, "chat", [b.did])
    cursor = await service.inbox_cursor(b.did)
    result = await service.wait(b.did, "mention", after=cursor, timeout_ms=20)
    assert result.timed_out and result.cursor == cursor


@pytest.mark.parametrize("timeout_ms", [0, -5, 60_001])
async def test_timeouts_outside_coral_server_bounds_are_refused(
    service: CoordinationService, agents: list[Identity], timeout_ms: int
) -> None:
    with pytest.raises(InvalidWait) as caught:
        await service.wait(agents[0].did, timeout_ms=timeout_ms)
    assert caught.value.category == "invalid"


async def test_agent_wait_needs_and_uses_from_agent(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did, c.did])
    start = await service.inbox_cursor(c.did)
    with pytest.raises(InvalidWait):
        await service.wait(c.did, "agent", timeout_ms=1)
    await post(service, a, thread.id, text="from a")
    from_b = await post(service, b, thread.id, text="from b")
    result = await service.wait(c.did, "agent", from_agent=b.did, after=start, timeout_ms=1)
    assert [e.entry.message.id for e in result.entries] == [from_b.message.id]


async def test_new_participant_receives_the_history(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, late = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did])
    await post(service, a, thread.id, text="before you came")
    await service.add_participant(a.did, thread.id, late.did)
    result = await service.wait(late.did, "message", timeout_ms=1)
    kinds = [e.entry.message.kind for e in result.entries]
    texts = [e.entry.message.text() for e in result.entries]
    assert kinds == ["coral.thread_created", "message", "coral.participant_added"]
    assert "before you came" in texts
    assert [e.entry.seq for e in result.entries] == [1, 2, 3]


async def test_resume_from_cursor_after_restart_misses_and_repeats_nothing(
    tmp_path: Path, clock: FakeClock, node_identity: Identity, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    path = tmp_path / "node.db"
    db, service = await open_service(path, clock, node_identity)
    thread = await service.create_thread(a.did, "chat", [b.did])
    first = await post(service, a, thread.id, text="one", mentions=(b,))
    got = await service.wait(b.did, "mention", timeout_ms=1)
    assert [e.entry.message.id for e in got.entries] == [first.message.id]
    cursor = got.cursor
    second = await post(service, a, thread.id, text="two", mentions=(b,))
    await db.close()  # the node stops; b never saw "two"

    db, service = await open_service(path, clock, node_identity)
    try:
        third = await post(service, a, thread.id, text="three", mentions=(b,))
        resumed = await service.wait(b.did, "mention", after=cursor, timeout_ms=1)
        ids = [e.entry.message.id for e in resumed.entries]
        assert ids == [second.message.id, third.message.id]
        again = await service.wait(b.did, "mention", after=resumed.cursor, timeout_ms=1)
        assert again.timed_out
        assert third.seq == 4
    finally:
        await db.close()


async def test_a_flood_of_waits_is_bounded_per_agent(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b = agents[:2]
    thread = await service.create_thread(a.did, "chat", [b.did])
    cursor = await service.inbox_cursor(b.did)
    waits = [
        asyncio.create_task(service.wait(b.did, "mention", after=cursor, timeout_ms=60_000))
        for _ in range(8)
    ]
    await until(lambda: service.signals.active_waits(b.did) == 8)
    with pytest.raises(TooManyWaits) as caught:
        await service.wait(b.did, "mention", after=cursor, timeout_ms=60_000)
    assert caught.value.reason == "too_many_waits"
    # Another agent is not affected by b's flood.
    other = await service.wait(a.did, "mention", timeout_ms=1)
    assert other.timed_out
    waits[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waits[0]  # the cancelled wait has ended, so its slot is released
    assert service.signals.active_waits(b.did) == 7
    await post(service, a, thread.id, mentions=(b,))
    results = await asyncio.wait_for(asyncio.gather(*waits[1:]), 5)
    assert all(len(r.entries) == 1 for r in results)
    assert service.signals.active_waits(b.did) == 0


async def test_concurrent_senders_all_land_in_order(
    service: CoordinationService, agents: list[Identity]
) -> None:
    a, b, c = agents[:3]
    thread = await service.create_thread(a.did, "chat", [b.did, c.did])
    start = await service.inbox_cursor(c.did)
    sent = await asyncio.gather(
        *(post(service, sender, thread.id, text=f"{i}") for i in range(10) for sender in (a, b))
    )
    assert sorted(e.seq for e in sent) == list(range(2, 22))
    result = await service.wait(c.did, "message", after=start, timeout_ms=1)
    assert [e.entry.seq for e in result.entries] == list(range(2, 22))
    cursors = [e.cursor for e in result.entries]
    assert cursors == sorted(set(cursors))
