"""The event loop the node runs on: uvloop when it is installed, asyncio's own otherwise.

uvloop (libuv) cuts the per-callback cost of the loop that every gRPC call,
HTTP request and database hop goes through. ``CORAL_EVENT_LOOP=asyncio``
forces the standard loop (for comparisons, or if uvloop misbehaves somewhere).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Environment variable that picks the loop: ``uvloop`` (default when installed) or ``asyncio``.
LOOP_ENV = "CORAL_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor when wanted and importable, else None (asyncio's default)."""
    if os.environ.get(LOOP_ENV, "uvloop").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: which loop ``run`` would use."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the chosen loop (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
