"""One shared snapshot feed for every open dashboard: rebuilt on a timer, sent on change.

However many browsers watch, the node builds at most one snapshot per tick
(and none while nobody watches); each subscriber receives the JSON text only
when it differs from what was last sent, ignoring ``generated_at``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

#: How long a subscriber waits before being sent a keep-alive instead.
KEEPALIVE_S = 15.0


def _comparable(snapshot: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in snapshot.items() if k != "generated_at"}, sort_keys=True)


class SnapshotFeed:
    """Builds snapshots while someone listens and wakes listeners when one changes."""

    def __init__(self, build: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._build = build
        self.version = 0
        self.latest: str = ""
        self._comparable = ""
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self.closed = False

    def close(self) -> None:
        """End every subscription now (the node is stopping); later ones end at once."""
        self.closed = True
        self._changed.set()

    async def refresh(self, *, force: bool = False) -> None:
        """Rebuild once if anyone listens (or ``force``); wake listeners if it changed."""
        if self.subscribers == 0 and not force:
            return
        async with self._lock:
            snapshot = await self._build()
            comparable = _comparable(snapshot)
            if comparable == self._comparable and self.latest:
                return
            self._comparable = comparable
            self.latest = json.dumps(snapshot, separators=(",", ":"), ensure_ascii=False)
            self.version += 1
            # Swap the event first so a listener woken now waits on the next change.
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def updates(self) -> AsyncGenerator[str | None, None]:
        """Yield the current snapshot, then each changed one; None means "send a keep-alive".

        Cancellation (the client went away) or ``close`` ends the iteration and
        unsubscribes.
        """
        self.subscribers += 1
        try:
            if self.closed:
                return
            await self.refresh(force=True)
            sent = self.version
            yield self.latest
            while not self.closed:
                if self.version == sent:
                    try:
                        await asyncio.wait_for(self._changed.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        yield None
                        continue
                    if self.closed:
                        return
                sent = self.version
                yield self.latest
        finally:
            self.subscribers -= 1
