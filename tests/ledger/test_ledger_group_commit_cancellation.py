"""Ledger submissions cancelled at random points: whole or absent, and the store stays usable.

Hypothesis draws submissions (one to three transfers each, which always
succeed on their own) against the real SQLite and PostgreSQL ledger stores,
awaited one by one or started together, and cancels some of them after a
random number of event-loop turns (queued, waiting for the transaction,
inside it, or while it commits). Afterwards every returned submission is
stored, every cancelled one is stored in full or not at all, the ledger's
invariants hold, a new transfer goes through, and ``close()`` finishes.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral.ledger import Account, AccountKind, LedgerStore, Transfer, find_violations
from coral.store.ledger_postgres import PostgresLedgerStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger.ledger_support import create_database
from tests.support.throwaway_postgres import ThrowawayPostgres

#: Bounds a hang in close() so it fails the test instead of stalling the suite.
HANG_GUARD_S = 60


@dataclass(frozen=True)
class Submission:
    transfers: int
    cancel_after: int | None  # event-loop turns before task.cancel(); None: never
    together_with_next: bool


submissions_strategy = st.lists(
    st.builds(
        Submission,
        transfers=st.integers(1, 3),
        cancel_after=st.none() | st.integers(0, 12),
        together_with_next=st.booleans(),
    ),
    min_size=1,
    max_size=8,
)


async def scenario(
    open_store: Callable[[], Awaitable[LedgerStore]], plan: list[Submission]
) -> None:
    store = await open_store()
    await store.create_accounts(
        [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd")], 0
    )
    batches = [
        [Transfer(f"s{n}-{i}", "op", "a", 1) for i in range(s.transfers)]
        for n, s in enumerate(plan)
    ]
    tasks: list[asyncio.Task[object]] = []
    cancellers: list[asyncio.Task[None]] = []

    async def cancel_later(task: asyncio.Task[object], turns: int) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()

    for submission, batch in zip(plan, batches, strict=True):
        task: asyncio.Task[object] = asyncio.create_task(store.create_transfers(batch, 1))
        tasks.append(task)
        if submission.cancel_after is not None:
            cancellers.append(asyncio.create_task(cancel_later(task, submission.cancel_after)))
        if not submission.together_with_next:
            await asyncio.wait(tasks)
    await asyncio.wait([*tasks, *cancellers])

    state = await store.load_snapshot()
    assert find_violations(state) == []
    for n, (batch, task) in enumerate(zip(batches, tasks, strict=True)):
        stored = sum(t.id in state.transfers for t in batch)
        if task.cancelled():
            assert stored in (0, len(batch)), f"cancelled submission {n}: {stored}/{len(batch)}"
        else:
            assert task.exception() is None, task.exception()
            assert stored == len(batch), f"returned submission {n}: {stored}/{len(batch)}"
    assert state.accounts["a"].credits_posted == sum(
        1 for batch in batches for t in batch if t.id in state.transfers
    )

    [after] = await store.create_transfers([Transfer("after", "op", "a", 1)], 2)
    assert after.ok and not after.duplicate
    await asyncio.wait_for(store.close(), HANG_GUARD_S)


CANCEL_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@settings(CANCEL_SETTINGS, max_examples=40)
@given(plan=submissions_strategy)
def test_cancelled_sqlite_ledger_submissions_are_whole_or_absent(plan: list[Submission]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        asyncio.run(scenario(lambda: SqliteLedgerStore.open(path), plan))


@pytest.mark.postgres
@settings(CANCEL_SETTINGS, max_examples=12)
@given(plan=submissions_strategy)
def test_cancelled_postgres_ledger_submissions_are_whole_or_absent(
    postgres_server: ThrowawayPostgres, plan: list[Submission]
) -> None:
    async def open_store() -> LedgerStore:
        return await PostgresLedgerStore.open(await create_database(postgres_server), pool_size=2)

    asyncio.run(scenario(open_store, plan))


@pytest.mark.parametrize("turns", range(8))
async def test_a_cancelled_snapshot_leaves_the_reader_outside_any_transaction(
    tmp_path: Path, turns: int
) -> None:
    store = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    try:
        await store.create_accounts(
            [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd")], 0
        )
        reading = asyncio.create_task(store.load_snapshot())
        for _ in range(turns):  # cancel during BEGIN, a query, or COMMIT
            await asyncio.sleep(0)
        reading.cancel()
        await asyncio.wait({reading})
        await store.create_transfers([Transfer("later", "op", "a", 3)], 1)
        # A reader stuck in a read transaction would still see the old snapshot.
        assert (await store.load_snapshot()).accounts["a"].credits_posted == 3
    finally:
        await store.close()
