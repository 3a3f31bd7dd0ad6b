"""run_to_completion: the step ends before the caller's cancellation is raised."""

from __future__ import annotations

import asyncio

import pytest

from coral.protocol.tasks import run_to_completion


async def test_returns_the_result_and_raises_the_error_of_the_step():
    async def ok() -> int:
        return 7

    async def fails() -> None:
        raise ValueError("no")

    assert await run_to_completion(ok()) == 7
    with pytest.raises(ValueError):
        await run_to_completion(fails())


async def test_a_caller_cancelled_twice_still_waits_for_the_step_then_sees_the_cancel():
    entered, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def step() -> None:
        entered.set()
        await release.wait()
        done.append("written")

    caller = asyncio.ensure_future(run_to_completion(step()))
    await entered.wait()
    caller.cancel()
    await asyncio.sleep(0)  # let the first cancel land, then cancel again
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # still waiting for the step
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["written"]


async def test_a_failing_step_after_a_cancel_is_logged_and_the_cancel_raised(
    caplog: pytest.LogCaptureFixture,
):
    entered, release = asyncio.Event(), asyncio.Event()

    async def step() -> None:
        entered.set()
        await release.wait()
        raise ValueError("refused")

    caller = asyncio.ensure_future(run_to_completion(step()))
    await entered.wait()
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert "refused" in caplog.text
