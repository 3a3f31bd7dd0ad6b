"""Cross-node payments: hash-locked hops over settlement accounts between two real nodes."""

from __future__ import annotations

import os

import pytest

from coral.ledger.conditional import condition_for
from coral_sdk import CoralApiError
from coral_sdk.ledger import LedgerClient, issue_dev_funds
from tests.federation_nodes.test_three_nodes import agent, converged, eventually


async def pay(client, payment_id: str, to: str, amount: int, condition: str, timeout_ms: int):
    return await LedgerClient(client).pay_remote(
        payment_id, to, amount, condition, timeout_ms=timeout_ms
    )


async def fulfil(client, payment_id: str, preimage: bytes):
    return await LedgerClient(client).fulfil_remote(payment_id, preimage)


@pytest.fixture
def two_nodes(node_factory):
    a = node_factory("a", ["--log-level", "warning"], CORAL_GOSSIP_INTERVAL_S="0.3")
    b = node_factory("b", ["--bootstrap", a.grpc], CORAL_GOSSIP_INTERVAL_S="0.3")
    return a, b


async def test_payment_crosses_nodes_once_the_payee_reveals_the_preimage(two_nodes):
    a, b = two_nodes
    payer, payee = await agent(a, "payer"), await agent(b, "payee")
    try:
        await converged([a, b], [payer, payee])
        token = (a.data_dir / "keys" / "admin.token").read_text().strip()
        await issue_dev_funds(a.http, token, payer.did, 100)
        preimage = os.urandom(32)
        sent = await pay(payer, "p1", payee.did, 40, condition_for(preimage), 30_000)
        assert sent.node == b.node_id
        payer_ledger, payee_ledger = LedgerClient(payer), LedgerClient(payee)
        held = await payer_ledger.balance()
        assert (held.debits_pending, held.available) == (40, 60)

        async def payee_sees_the_hold():
            return (await payee_ledger.balance()).credits_pending == 40

        await eventually(payee_sees_the_hold, what="the receiving hop on node B")
        with pytest.raises(CoralApiError) as info:
            await fulfil(payee, "p1", os.urandom(32))  # wrong preimage
        assert info.value.reason == "condition_not_met"
        await fulfil(payee, "p1", preimage)
        assert (await payee_ledger.balance()).credits_posted == 40

        async def payer_settled():
            state = await payer_ledger.balance()
            return state.debits_posted == 40 and state.debits_pending == 0

        await eventually(payer_settled, what="the sending hop posted on node A")
    finally:
        await payer.close()
        await payee.close()


async def test_an_unfulfilled_payment_rolls_back_on_both_hops(two_nodes):
    a, b = two_nodes
    payer, payee = await agent(a, "payer"), await agent(b, "payee")
    try:
        await converged([a, b], [payer, payee])
        token = (a.data_dir / "keys" / "admin.token").read_text().strip()
        await issue_dev_funds(a.http, token, payer.did, 100)
        await pay(payer, "p2", payee.did, 25, condition_for(os.urandom(32)), 6_000)
        payer_ledger, payee_ledger = LedgerClient(payer), LedgerClient(payee)

        async def payee_sees_the_hold():
            return (await payee_ledger.balance()).credits_pending == 25

        await eventually(payee_sees_the_hold, what="the receiving hop")

        async def both_rolled_back():
            mine, theirs = await payer_ledger.balance(), await payee_ledger.balance()
            return (
                mine.debits_pending,
                mine.available,
                theirs.credits_pending,
                theirs.credits_posted,
            ) == (0, 100, 0, 0)

        await eventually(both_rolled_back, timeout=30, what="expiry on both nodes")
    finally:
        await payer.close()
        await payee.close()
