"""The snapshot feed: one build per tick for every listener, sent only when it changed."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from coral.api.dashboard.feed import KEEPALIVE_S, SnapshotFeed


class Source:
    """A snapshot source whose content the test changes, counting builds."""

    def __init__(self) -> None:
        self.value = 0
        self.builds = 0
        self.clock = 0

    async def build(self) -> dict[str, Any]:
        self.builds += 1
        self.clock += 1
        return {"value": self.value, "generated_at": self.clock}


class WatchedEvent(asyncio.Event):
    """An event that counts the tasks waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters = 0

    async def wait(self) -> Literal[True]:
        self.waiters += 1
        try:
            return await super().wait()
        finally:
            self.waiters -= 1


async def test_no_builds_without_listeners():
    source = Source()
    feed = SnapshotFeed(source.build)
    await feed.refresh()
    assert source.builds == 0


async def test_listeners_get_the_current_snapshot_then_only_changes():
    source = Source()
    feed = SnapshotFeed(source.build)
    first, second = feed.updates(), feed.updates()
    assert json.loads(await anext(first))["value"] == 0
    assert json.loads(await anext(second))["value"] == 0
    pending = asyncio.ensure_future(anext(first))
    version, builds = feed.version, source.builds
    await feed.refresh()  # same content (only generated_at moved): nobody is woken
    assert source.builds == builds + 1 and feed.version == version  # rebuilt, no new version
    source.value = 7
    await feed.refresh()
    # The listener's next item is the changed snapshot: had the unchanged rebuild
    # been sent, it would have received value 0 here.
    assert json.loads(await asyncio.wait_for(pending, 10))["value"] == 7
    # The slower listener catches up with the latest version, not every intermediate one.
    source.value = 8
    await feed.refresh()
    assert json.loads(await asyncio.wait_for(anext(second), 10))["value"] == 8
    assert feed.subscribers == 2
    await first.aclose()
    await second.aclose()
    assert feed.subscribers == 0


async def test_close_ends_waiting_listeners_at_once():
    source = Source()
    feed = SnapshotFeed(source.build)
    listener = feed.updates()
    await anext(listener)
    changed = feed._changed = WatchedEvent()  # the event the listener waits on next
    waiting = asyncio.ensure_future(anext(listener))
    async with asyncio.timeout(10):
        while changed.waiters == 0:  # until the listener waits for the next change
            await asyncio.sleep(0.001)
    feed.close()
    try:
        # Not woken by close, the listener would send a keep-alive (None) after
        # KEEPALIVE_S instead of ending; the outer bound only guards a hang.
        await asyncio.wait_for(waiting, KEEPALIVE_S * 4)
        raise AssertionError("the stream went on after close")
    except StopAsyncIteration:
        pass
    assert feed.subscribers == 0
    assert [item async for item in feed.updates()] == []  # new listeners end at once
