"""Determinism: one op log always yields the same ledger, in memory or in a database."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from coral.ledger import LedgerState, Transfer, TransferFlags
from coral.store.ledger_sqlite import SqliteLedgerStore
from tests.ledger.ledger_model import ACCOUNTS, AMOUNTS, CREDITS, DEBITS

transfer_ids = st.sampled_from([f"t{i}" for i in range(12)])
new_transfer = st.builds(
    Transfer,
    id=transfer_ids,
    debit_account=st.sampled_from(DEBITS),
    credit_account=st.sampled_from(CREDITS),
    amount=st.sampled_from([1, 5, 40, *AMOUNTS]),
    flags=st.sampled_from([TransferFlags.NONE, TransferFlags.PENDING]),
)
resolving = st.builds(
    Transfer,
    id=transfer_ids,
    pending_id=transfer_ids,
    amount=st.sampled_from([0, 1, 5]),
    flags=st.sampled_from([TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING]),
)
# Each batch ends one linked chain: all but its last event carry the linked flag.
batches = st.lists(
    st.lists(
        st.one_of(new_transfer, resolving),
        min_size=1,
        max_size=4,
    ).map(lambda b: [replace(t, flags=t.flags | TransferFlags.LINKED) for t in b[:-1]] + b[-1:]),
    min_size=1,
    max_size=8,
)


def replay(log: list[list[Transfer]]) -> LedgerState:
    state = LedgerState()
    state.create_accounts(ACCOUNTS, 0)
    for step, batch in enumerate(log, start=1):
        state.create_transfers(batch, step)
    return state


def contents(state: LedgerState) -> tuple[object, ...]:
    return (state.accounts, state.transfers, state.resolutions)


@settings(max_examples=150, deadline=None)
@given(log=batches)
def test_replaying_a_log_gives_identical_state(log: list[list[Transfer]]) -> None:
    assert contents(replay(log)) == contents(replay(log))


@settings(max_examples=15, deadline=None)
@given(log=batches)
def test_sqlite_store_ends_in_exactly_the_pure_state(log: list[list[Transfer]]) -> None:
    async def through_store(path: Path) -> LedgerState:
        store = await SqliteLedgerStore.open(path)
        try:
            await store.create_accounts(ACCOUNTS, 0)
            # Submitted concurrently, so several batches share each commit.
            await asyncio.gather(
                *(store.create_transfers(b, step) for step, b in enumerate(log, start=1))
            )
            return await store.load_snapshot()
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        stored = asyncio.run(through_store(Path(tmp) / "ledger.db"))
    assert contents(stored) == contents(replay(log))
