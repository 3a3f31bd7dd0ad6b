"""Park one async call at a gate, to cancel its caller at exactly that await.

``Gated`` wraps a real component (a store, an index, an escrow, session keys):
every call goes through to it, except that once armed the next call of one
method waits at the gate until the test opens it. ``cancel_at`` runs an
operation, cancels it while the named call is parked, opens the gate, and
expects the ``CancelledError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest


class Gated:
    """Wraps ``inner``; once armed, the next call of ``method`` parks at a gate."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._method: str | None = None
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def arm(self, method: str) -> None:
        """Park the next call of ``method`` (one call only)."""
        self._method = method
        self.entered.clear()
        self.release.clear()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method:
            return attr

        async def parked(*args: Any, **kwargs: Any) -> Any:
            self._method = None
            self.entered.set()
            await self.release.wait()
            return await attr(*args, **kwargs)

        return parked


async def cancel_at(gated: Gated, method: str, call: Awaitable[Any]) -> None:
    """Run ``call``, cancel it while ``method`` is parked, and expect the CancelledError."""
    gated.arm(method)
    task = asyncio.ensure_future(call)
    await gated.entered.wait()
    task.cancel()
    gated.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
