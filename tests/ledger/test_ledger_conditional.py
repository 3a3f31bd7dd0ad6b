"""Hash-locked transfers and multi-hop paths: one preimage settles every hop or none."""

from __future__ import annotations

import os

import pytest

from coral.ledger import (
    Account,
    AccountFlags,
    AccountKind,
    LedgerState,
    PathHop,
    PendingStatus,
    Transfer,
    condition_for,
    conditional_transfer,
    find_violations,
    fulfil_path,
    fulfil_transfer,
    prepare_path,
)
from coral.ledger import errors as e

LIMITED = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


def node_ledger(*accounts: Account) -> LedgerState:
    state = LedgerState()
    assert all(r.ok for r in state.create_accounts(accounts, 0))
    return state


@pytest.fixture
def two_nodes() -> tuple[LedgerState, LedgerState, list[PathHop]]:
    """Node A holds the sender; node B the receiver; each keeps the other's settlement account."""
    node_a = node_ledger(
        Account("op", "usd", kind=AccountKind.OPERATOR),
        Account("sender", "usd", flags=LIMITED),
        Account("settle:A", "usd", kind=AccountKind.NODE_SETTLEMENT),
        Account("settle:B", "usd", kind=AccountKind.NODE_SETTLEMENT),
    )
    node_b = node_ledger(
        Account("settle:A", "usd", kind=AccountKind.NODE_SETTLEMENT),
        Account("settle:B", "usd", kind=AccountKind.NODE_SETTLEMENT),
        Account("receiver", "usd", flags=LIMITED),
    )
    assert node_a.create_transfers([Transfer("fund", "op", "sender", 100)], 0)[0].ok
    hops = [
        PathHop(node_a, "sender", "settle:A"),
        PathHop(node_a, "settle:A", "settle:B"),
        PathHop(node_b, "settle:B", "receiver"),
    ]
    return node_a, node_b, hops


def test_preimage_posts_a_hash_locked_transfer_before_expiry() -> None:
    preimage = os.urandom(32)
    state = node_ledger(Account("a", "usd"), Account("b", "usd"))
    lock = conditional_transfer(
        "lock", "a", "b", 25, condition=condition_for(preimage), timeout_ms=100
    )
    assert state.create_transfers([lock], 1000)[0].ok
    [wrong] = state.create_transfers([fulfil_transfer("f0", "lock", os.urandom(32))], 1050)
    assert isinstance(wrong.error, e.ConditionNotMet)
    [right] = state.create_transfers([fulfil_transfer("f1", "lock", preimage)], 1099)
    assert right.ok and state.accounts["b"].credits_posted == 25
    assert state.resolutions["lock"].status is PendingStatus.POSTED


def test_fulfilment_after_expiry_is_refused() -> None:
    preimage = os.urandom(32)
    state = node_ledger(Account("a", "usd"), Account("b", "usd"))
    lock = conditional_transfer(
        "lock", "a", "b", 5, condition=condition_for(preimage), timeout_ms=10
    )
    state.create_transfers([lock], 1000)
    [late] = state.create_transfers([fulfil_transfer("f", "lock", preimage)], 1010)
    assert isinstance(late.error, e.PendingExpired)
    assert state.accounts["b"].credits_posted == 0


def test_preimage_must_be_32_bytes() -> None:
    with pytest.raises(e.InvalidCondition):
        condition_for(b"short")
    with pytest.raises(e.InvalidCondition):
        fulfil_transfer("f", "lock", b"short")


def test_path_settles_every_hop_with_one_preimage(
    two_nodes: tuple[LedgerState, LedgerState, list[PathHop]],
) -> None:
    node_a, node_b, hops = two_nodes
    preimage = os.urandom(32)
    path = prepare_path(
        "pay1",
        hops,
        40,
        condition=condition_for(preimage),
        final_timeout_ms=1000,
        hop_margin_ms=500,
        now_ms=10,
    )
    # Deadlines shrink toward the receiver.
    assert [p.expires_at for p in path.pendings] == [2010, 1510, 1010]
    assert node_a.accounts["sender"].debits_pending == 40
    posted = fulfil_path(path, preimage, now_ms=500)
    assert [t.pending_id for t in posted] == ["pay1.hop2", "pay1.hop1", "pay1.hop0"]
    assert node_b.accounts["receiver"].balance == 40
    assert node_a.accounts["sender"].balance == 60
    assert find_violations(node_a) == [] and find_violations(node_b) == []


def test_wrong_preimage_rolls_back_every_hop(
    two_nodes: tuple[LedgerState, LedgerState, list[PathHop]],
) -> None:
    node_a, node_b, hops = two_nodes
    preimage = os.urandom(32)
    path = prepare_path(
        "pay2",
        hops,
        40,
        condition=condition_for(preimage),
        final_timeout_ms=1000,
        hop_margin_ms=100,
        now_ms=10,
    )
    with pytest.raises(e.ConditionNotMet):
        fulfil_path(path, os.urandom(32), now_ms=20)
    statuses = [h.ledger.resolutions[p.id].status for h, p in zip(hops, path.pendings, strict=True)]
    assert statuses == [PendingStatus.VOIDED] * 3
    assert node_a.accounts["sender"].available == 100
    assert node_b.accounts["receiver"].balance == 0


def test_path_expired_at_the_last_hop_rolls_back_instead_of_half_settling(
    two_nodes: tuple[LedgerState, LedgerState, list[PathHop]],
) -> None:
    node_a, node_b, hops = two_nodes
    preimage = os.urandom(32)
    path = prepare_path(
        "pay3",
        hops,
        40,
        condition=condition_for(preimage),
        final_timeout_ms=100,
        hop_margin_ms=100,
        now_ms=0,
    )
    with pytest.raises(e.PendingExpired):
        fulfil_path(path, preimage, now_ms=150)  # hop2 expired at 100, others still open
    assert node_b.accounts["receiver"].balance == 0
    assert node_a.accounts["sender"].available == 100
    assert all(p.id in h.ledger.resolutions for h, p in zip(hops, path.pendings, strict=True))


def test_path_that_cannot_be_funded_leaves_no_hop_locked(
    two_nodes: tuple[LedgerState, LedgerState, list[PathHop]],
) -> None:
    node_a, node_b, hops = two_nodes
    broken = [*hops[:2], PathHop(node_b, "settle:B", "missing")]
    with pytest.raises(e.UnknownAccount):
        prepare_path(
            "pay4",
            broken,
            40,
            condition=condition_for(os.urandom(32)),
            final_timeout_ms=100,
            hop_margin_ms=10,
            now_ms=0,
        )
    assert node_a.open_pending_ids() == [] and node_b.open_pending_ids() == []
    assert node_a.accounts["sender"].available == 100
