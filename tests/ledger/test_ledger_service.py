"""LedgerService over each store: the calls the node makes, end to end on a real database."""

from __future__ import annotations

import asyncio
import os

import pytest

from coral.ledger import (
    AccountKind,
    LedgerService,
    PendingStatus,
    Transfer,
    TransferFlags,
    condition_for,
    find_violations,
    operator_account_id,
    verify_receipt,
)
from coral.ledger import errors as e
from coral.ledger.ports import LedgerStore
from coral.ledger.service import MAX_BATCH_EVENTS
from coral.protocol.errors import TooLarge
from coral.protocol.identity import Identity
from tests.ledger.ledger_support import Clock


async def funded(service: LedgerService, amount: int = 100) -> None:
    await service.open_account("alice", owner="did:key:zAlice")
    await service.open_account("bob", owner="did:key:zBob")
    await service.issue("alice", amount, transfer_id="seed")


async def test_issue_funds_an_agent_from_the_operator_account(service: LedgerService) -> None:
    await funded(service)
    alice = await service.balance("alice")
    operator = await service.balance(operator_account_id("coral"))
    assert alice.balance == 100 and operator.balance == -100
    assert operator.kind is AccountKind.OPERATOR


async def test_transfer_returns_a_receipt_the_node_signed(
    service: LedgerService, node_identity: Identity
) -> None:
    await funded(service)
    outcome = await service.transfer("alice", "bob", 30, transfer_id="pay-1", memo="job 7")
    assert outcome.receipt is not None
    verify_receipt(outcome.receipt, node_identity.did)
    assert await service.receipt("pay-1") == outcome.receipt
    assert (await service.balance("bob")).balance == 30


async def test_retrying_a_transfer_id_pays_once(service: LedgerService) -> None:
    await funded(service)
    first = await service.transfer("alice", "bob", 30, transfer_id="pay-1")
    again = await service.transfer("alice", "bob", 30, transfer_id="pay-1")
    assert again.duplicate and again.transfer == first.transfer
    assert (await service.balance("bob")).balance == 30
    with pytest.raises(e.ExistsWithDifferentFields):
        await service.transfer("alice", "bob", 31, transfer_id="pay-1")


async def test_insufficient_funds_is_a_typed_error_and_changes_nothing(
    service: LedgerService,
) -> None:
    await funded(service)
    with pytest.raises(e.ExceedsCredits):
        await service.transfer("alice", "bob", 101)
    assert (await service.balance("alice")).balance == 100
    assert (await service.balance("bob")).balance == 0


async def test_escrow_reserve_post_partial_and_release(service: LedgerService) -> None:
    await funded(service)
    hold = await service.reserve("alice", "bob", 60, timeout_ms=5_000, transfer_id="hold")
    assert (await service.balance("alice")).available == 40
    outcome = await service.post(hold.id, amount=45)
    assert outcome.receipt is not None and outcome.receipt.pending_id == "hold"
    alice = await service.balance("alice")
    assert (alice.debits_posted, alice.debits_pending, alice.available) == (45, 0, 55)
    with pytest.raises(e.PendingAlreadyResolved):
        await service.void(hold.id)


async def test_void_releases_the_whole_reservation(
    service: LedgerService, any_store: LedgerStore
) -> None:
    await funded(service)
    assert await any_store.escrow_held() == 0
    hold = await service.reserve("alice", "bob", 60)
    assert await any_store.escrow_held() == 60  # what the escrow gauge reports
    voided = await service.void(hold.id)
    assert await any_store.escrow_held() == 0
    assert voided.amount == 60 and voided.flags == TransferFlags.VOID_PENDING
    assert (await service.balance("alice")).available == 100
    with pytest.raises(e.NotPosted):
        await service.receipt(voided.id)


async def test_expiry_uses_the_injected_clock(
    service: LedgerService, any_store: LedgerStore, clock: Clock
) -> None:
    await funded(service)
    hold = await service.reserve("alice", "bob", 60, timeout_ms=1_000)
    assert await service.expire_due() == []
    clock.now_ms += 999
    assert await service.expire_due() == []
    clock.now_ms += 1
    expired = await service.expire_due()
    assert [r.pending_id for r in expired] == [hold.id]
    resolution = await any_store.get_resolution(hold.id)
    assert resolution is not None and resolution.status is PendingStatus.EXPIRED
    assert (await service.balance("alice")).available == 100
    with pytest.raises(e.PendingAlreadyResolved):
        await service.post(hold.id)


async def test_conditional_payment_needs_the_preimage(service: LedgerService) -> None:
    await funded(service)
    preimage = os.urandom(32)
    lock = await service.reserve(
        "alice", "bob", 20, timeout_ms=10_000, condition=condition_for(preimage)
    )
    with pytest.raises(e.ConditionNotMet):
        await service.fulfil_conditional(lock.id, os.urandom(32))
    with pytest.raises(e.FulfillmentRequired):
        await service.post(lock.id)
    outcome = await service.fulfil_conditional(lock.id, preimage)
    assert outcome.transfer.fulfillment == preimage.hex()
    assert (await service.balance("bob")).balance == 20


async def test_batch_applies_linked_chains_atomically(service: LedgerService) -> None:
    await funded(service)
    await service.open_account("carol")
    results = await service.batch(
        [
            Transfer("split-1", "alice", "bob", 50, flags=TransferFlags.LINKED),
            Transfer("split-2", "alice", "carol", 60),
        ]
    )
    assert [r.error.reason for r in results if r.error] == [
        "linked_event_failed",
        "exceeds_credits",
    ]
    assert (await service.balance("bob")).balance == 0


async def test_history_pages_by_sequence(service: LedgerService) -> None:
    await funded(service)
    for i in range(5):
        await service.transfer("alice", "bob", 1, transfer_id=f"h{i}")
    page1 = await service.history("bob", limit=3)
    page2 = await service.history("bob", after=page1[-1].seq, limit=3)
    assert [h.transfer.id for h in page1 + page2] == [f"h{i}" for i in range(5)]
    assert (await service.history("alice"))[0].transfer.id == "seed"
    with pytest.raises(e.UnknownAccount):
        await service.history("nobody")


async def test_unknown_things_raise_not_found(service: LedgerService) -> None:
    with pytest.raises(e.UnknownAccount):
        await service.balance("nobody")
    with pytest.raises(e.TransferNotFound):
        await service.receipt("nothing")
    with pytest.raises(e.UnknownAccount):
        await service.issue("nobody", 5)


async def test_concurrent_spenders_never_overdraw_a_hot_account(
    service: LedgerService, any_store: LedgerStore
) -> None:
    await funded(service, amount=50)
    outcomes = await asyncio.gather(
        *(service.transfer("alice", "bob", 1, transfer_id=f"c{i}") for i in range(80)),
        return_exceptions=True,
    )
    succeeded = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(succeeded) == 50 and all(isinstance(r, e.ExceedsCredits) for r in refused)
    assert (await service.balance("alice")).balance == 0
    assert find_violations(await any_store.load_snapshot()) == []


async def test_oversized_batch_is_refused_whole(service: LedgerService) -> None:
    await funded(service)
    batch = [Transfer(f"x{i}", "alice", "bob", 1) for i in range(MAX_BATCH_EVENTS + 1)]
    with pytest.raises(TooLarge):
        await service.batch(batch)
    assert (await service.balance("bob")).balance == 0
