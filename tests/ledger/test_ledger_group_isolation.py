"""One group commit, many submitters: each keeps its own outcome, balances settle once.

The stores apply a whole group to one working set and write each touched
account once (``LedgerState.grouped``). These tests submit concurrently, so
the submissions share groups, and check what every submitter sees and what
the database ends with, on every store.
"""

from __future__ import annotations

import asyncio

from coral.ledger import (
    Account,
    AccountFlags,
    AccountKind,
    LedgerState,
    LedgerStore,
    Transfer,
    TransferFlags,
    find_violations,
)
from coral.ledger import errors as e


async def fund(store: LedgerStore, amount: int) -> None:
    accounts = [Account("op", "usd", kind=AccountKind.OPERATOR)]
    accounts += [
        Account(name, "usd", flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        for name in ("a", "b")
    ]
    assert all(r.ok for r in await store.create_accounts(accounts, 0))
    [funded] = await store.create_transfers([Transfer("fund", "op", "a", amount)], 0)
    assert funded.ok


async def test_a_failing_transfer_does_not_fail_its_neighbours(any_store: LedgerStore) -> None:
    await fund(any_store, 10)
    requests = [
        [Transfer("ok1", "a", "b", 4)],
        [Transfer("overdraw", "a", "b", 100)],  # more than "a" holds: refused alone
        [Transfer("ok2", "a", "b", 5)],
        [Transfer("unknown", "a", "nobody", 1)],
        [Transfer("too-much-now", "a", "b", 2)],  # 4 + 5 already taken: only 1 left
        [Transfer("ok1", "a", "b", 4)],  # an identical retry of the first
        [Transfer("ok3", "b", "a", 1)],
        [Transfer("nul", "a", "b", 1, memo="x\x00y")],  # PostgreSQL cannot store it
        [Transfer("surrogate", "b", "a", 1, memo="\udc00")],  # nor UTF-8 encode it
    ]
    outcomes = await asyncio.gather(*(any_store.create_transfers(r, 5) for r in requests))
    results = [result for [result] in outcomes]
    assert [type(r.error) if r.error else None for r in results] == [
        None,
        e.ExceedsCredits,
        None,
        e.UnknownAccount,
        e.ExceedsCredits,
        None,
        None,
        e.TextNotStorable,
        e.TextNotStorable,
    ]
    assert results[5].duplicate and not results[0].duplicate
    a, b = await any_store.get_account("a"), await any_store.get_account("b")
    assert a is not None and b is not None
    assert (a.debits_posted, a.credits_posted) == (9, 11)
    assert (b.debits_posted, b.credits_posted) == (1, 9)
    state = await any_store.load_snapshot()
    assert find_violations(state) == []
    assert set(state.transfers) == {"fund", "ok1", "ok2", "ok3"}


async def test_a_failed_linked_chain_in_a_group_restores_the_balances_it_touched(
    any_store: LedgerStore,
) -> None:
    await fund(any_store, 10)
    chain = [
        Transfer("c1", "a", "b", 6, flags=TransferFlags.LINKED),
        Transfer("c2", "b", "a", 1, flags=TransferFlags.LINKED),
        Transfer("c3", "a", "b", 50),  # fails: the whole chain is undone
    ]
    requests = [
        [Transfer("before", "a", "b", 1)],
        chain,
        [Transfer("after", "a", "b", 9)],  # fits only because the chain was undone
    ]
    outcomes = await asyncio.gather(*(any_store.create_transfers(r, 5) for r in requests))
    assert outcomes[0][0].ok and outcomes[2][0].ok
    assert [type(r.error) for r in outcomes[1]] == [
        e.LinkedEventFailed,
        e.LinkedEventFailed,
        e.ExceedsCredits,
    ]
    a = await any_store.get_account("a")
    assert a is not None and (a.debits_posted, a.credits_posted, a.debits_pending) == (10, 10, 0)
    assert find_violations(await any_store.load_snapshot()) == []


async def test_two_phase_transfers_in_one_group_hold_post_and_void(any_store: LedgerStore) -> None:
    await fund(any_store, 10)
    [held] = await any_store.create_transfers(
        [Transfer("hold", "a", "b", 7, flags=TransferFlags.PENDING, timeout_ms=1000)], 1
    )
    assert held.ok
    requests = [
        [Transfer("post", pending_id="hold", amount=5, flags=TransferFlags.POST_PENDING)],
        [Transfer("void", pending_id="hold", flags=TransferFlags.VOID_PENDING)],  # too late
        [Transfer("spend", "a", "b", 5)],  # 10 - 5 posted: 5 left once the rest is released
        [Transfer("hold2", "a", "b", 1, flags=TransferFlags.PENDING)],  # nothing left
    ]
    outcomes = await asyncio.gather(*(any_store.create_transfers(r, 5) for r in requests))
    results = [result for [result] in outcomes]
    assert [type(r.error) if r.error else None for r in results] == [
        None,
        e.PendingAlreadyResolved,
        None,
        e.ExceedsCredits,
    ]
    a = await any_store.get_account("a")
    assert a is not None and (a.debits_posted, a.debits_pending) == (10, 0)
    assert await any_store.escrow_held() == 0
    assert find_violations(await any_store.load_snapshot()) == []


async def test_history_keeps_the_order_transfers_were_applied_in(any_store: LedgerStore) -> None:
    await fund(any_store, 1000)
    batch = [Transfer(f"h{i:03}", "a", "b", 1 + i % 3) for i in range(60)]
    outcomes = await asyncio.gather(*(any_store.create_transfers([t], 5) for t in batch))
    assert all(result.ok for [result] in outcomes)
    history = await any_store.history("b", 0, 100)
    assert [entry.transfer.id for entry in history] == [t.id for t in batch]
    seqs = [entry.seq for entry in history]
    assert seqs == sorted(seqs)


def test_a_grouped_state_writes_each_touched_account_once() -> None:
    state = LedgerState(
        [Account("op", "usd", kind=AccountKind.OPERATOR), Account("a", "usd"), Account("b", "usd")]
    )
    with state.grouped():
        for i in range(10):
            [result] = state.create_transfers(
                [Transfer(f"g{i}", "op", "a" if i % 2 else "b", 3)], 1
            )
            assert result.ok
    assert state.accounts["a"].credits_posted == 15 and state.accounts["b"].credits_posted == 15
    assert state.accounts["op"].debits_posted == 30
    changes = state.take_changes()
    assert sorted(changes.accounts_updated) == ["a", "b", "op"]
    assert [t.id for t in changes.transfers_created] == [f"g{i}" for i in range(10)]
    assert find_violations(state) == []
