"""The group committer: groups, per-item failures, withdrawal, cancellation and close."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from coral.protocol.errors import StorageUnavailable
from coral.store.group_commit import Failed, GroupCommitter


class Recorder:
    """A commit function that records each group and can be held open."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def commit(self, group: list[int]) -> Sequence[int | Failed]:
        self.groups.append(group)
        self.entered.set()
        await self.release.wait()
        return [Failed(ValueError(n)) if n < 0 else n * 10 for n in group]


async def test_work_arriving_during_a_commit_shares_the_next_one() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_group=100)
    first = asyncio.create_task(committer.submit(1))
    await recorder.entered.wait()
    rest = [asyncio.create_task(committer.submit(n)) for n in range(2, 6)]
    await asyncio.sleep(0)
    recorder.release.set()
    assert await first == 10
    assert await asyncio.gather(*rest) == [20, 30, 40, 50]
    assert recorder.groups == [[1], [2, 3, 4, 5]]
    assert committer.stats.groups == 2 and committer.stats.largest_group == 4


async def test_an_item_that_fails_alone_gets_its_own_error_and_the_rest_commit() -> None:
    committer = GroupCommitter(Recorder().commit, max_group=100)
    ok, bad = await asyncio.gather(
        committer.submit(1), committer.submit(-1), return_exceptions=True
    )
    assert ok == 10 and isinstance(bad, ValueError)


async def test_a_failed_commit_fails_every_item_of_its_group_with_a_typed_error() -> None:
    async def commit(group: list[int]) -> Sequence[int | Failed]:
        raise OSError("disk full")

    committer = GroupCommitter(commit, max_group=100)
    outcomes = await asyncio.gather(
        committer.submit(1), committer.submit(2), return_exceptions=True
    )
    assert all(isinstance(o, StorageUnavailable) for o in outcomes)
    assert committer.stats.failed_groups == 1


async def test_a_cancelled_waiter_still_queued_is_withdrawn() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_group=100)
    first = asyncio.create_task(committer.submit(1))
    await recorder.entered.wait()
    withdrawn = asyncio.create_task(committer.submit(2))
    kept = asyncio.create_task(committer.submit(3))
    await asyncio.sleep(0)
    withdrawn.cancel()
    recorder.release.set()
    assert await first == 10 and await kept == 30
    assert withdrawn.cancelled()
    assert recorder.groups == [[1], [3]]


async def test_a_cancelled_flush_fails_its_group_and_the_cancellation_goes_on() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_group=1)
    in_flight = asyncio.create_task(committer.submit(1))
    queued = asyncio.create_task(committer.submit(2))
    await recorder.entered.wait()
    flusher = committer._task
    assert flusher is not None
    flusher.cancel()
    with pytest.raises(StorageUnavailable, match="mid-commit"):
        await in_flight
    with pytest.raises(StorageUnavailable, match="nothing was stored"):
        await queued
    assert flusher.cancelled()  # the flush task ended cancelled: not swallowed
    recorder.release.set()
    assert await committer.submit(4) == 40  # a new flush task takes over


async def test_close_commits_what_is_queued_then_refuses_new_work() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.commit, max_group=2)
    pending = [asyncio.create_task(committer.submit(n)) for n in range(1, 6)]
    await recorder.entered.wait()
    closing = asyncio.create_task(committer.close())
    await asyncio.sleep(0)
    recorder.release.set()
    await closing
    assert [p.result() for p in pending] == [10, 20, 30, 40, 50]
    with pytest.raises(StorageUnavailable, match="closed"):
        await committer.submit(6)
