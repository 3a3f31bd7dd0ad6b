"""Finish a multi-step write even when its caller is cancelled.

The one asyncio helper the domain packages share (no I/O of its own). A step
that writes several things (a record, then its index; a hold, then the
document that records it) runs as its own task: cancelling the caller does not
cancel the step. The caller waits for the step to end and only then raises
its ``CancelledError``, so a cancelled caller never leaves the step
half-written, and it still sees the cancellation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("coral.tasks")

T = TypeVar("T")


async def run_to_completion(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step`` as a task to its end, even if the caller is cancelled meanwhile.

    Returns the step's result or raises its error when the caller was not
    cancelled.

    Raises:
        Exception: whatever ``step`` raised.
        asyncio.CancelledError: the caller was cancelled; the step had ended
            (its result dropped, an error logged) before this is raised. A
            step cancelled by someone else (the event loop shutting down)
            also raises it.

    Cancellation: deferred until the step has ended, never swallowed; a
    caller cancelled again while it waits still waits for the step. A step
    that never ends therefore keeps its caller waiting too.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await _wait_out(task)
        raise


async def _wait_out(task: asyncio.Future[Any]) -> None:
    """Wait until ``task`` is done, however often the waiter is cancelled."""
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            continue  # the caller's cancel is raised once the step has ended
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("a step finished after its caller was cancelled failed: %r", error)
