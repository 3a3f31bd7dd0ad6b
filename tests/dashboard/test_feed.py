"""The snapshot feed: one build per tick for every listener, sent only when it changed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from coral.api.dashboard.feed import SnapshotFeed


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
    await feed.refresh()  # same content (only generated_at moved): nobody is woken
    await asyncio.sleep(0.01)
    assert not pending.done()
    source.value = 7
    await feed.refresh()
    assert json.loads(await asyncio.wait_for(pending, 1))["value"] == 7
    # The slower listener catches up with the latest version, not every intermediate one.
    source.value = 8
    await feed.refresh()
    assert json.loads(await asyncio.wait_for(anext(second), 1))["value"] == 8
    assert feed.subscribers == 2
    await first.aclose()
    await second.aclose()
    assert feed.subscribers == 0


async def test_close_ends_waiting_listeners_at_once():
    source = Source()
    feed = SnapshotFeed(source.build)
    listener = feed.updates()
    await anext(listener)
    waiting = asyncio.ensure_future(anext(listener))
    await asyncio.sleep(0.01)
    feed.close()
    try:
        await asyncio.wait_for(waiting, 1)
        raise AssertionError("the stream went on after close")
    except StopAsyncIteration:
        pass
    assert feed.subscribers == 0
    assert [item async for item in feed.updates()] == []  # new listeners end at once
