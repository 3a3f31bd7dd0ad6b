"""The ledger's access rules without HTTP: only owners spend, invariants always hold.

The in-memory store twins (they pass the same contract tests as the SQLite
stores), a real agent directory and real signatures; hypothesis
drives random operations by random callers and checks after every step
that money left an account only at its owner's request and that the ledger
still balances.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral.agents.directory import AgentDirectory
from coral.agents.memory import MemoryAgentStore
from coral.ledger import errors, find_violations
from coral.ledger.access import (
    Caller,
    DevModeOnly,
    InvalidTransferId,
    LedgerAccess,
    MissingTransferId,
    NotAccountOwner,
)
from coral.ledger.memory import MemoryLedgerStore
from coral.ledger.relay import settlement_account_id
from coral.ledger.service import LedgerService
from coral.node.subsystems.ledger import open_node_accounts
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import CoralError, Forbidden
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms

AGENTS = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 4)]
STRANGER = Identity.from_seed(b"s" * 32)  # signs requests but never registered


@dataclass
class Env:
    access: LedgerAccess
    store: MemoryLedgerStore
    node: Identity


@asynccontextmanager
async def environment(*, dev_mode: bool = True) -> AsyncIterator[Env]:
    agents = MemoryAgentStore()
    node = Identity.from_seed(b"n" * 32)
    directory = AgentDirectory(agents, node, now_ms)
    for index, identity in enumerate(AGENTS):
        record = AgentRecord(
            agent=identity.did,
            home_node=node.did,
            manifest=AgentManifest(name=f"agent-{index}"),  # a name binds to one key
            version=1,
            updated_at=now_ms(),
        )
        await directory.register(sign_record_as_agent(record, identity))
    store = MemoryLedgerStore()
    ledger = LedgerService(store, node, now_ms)
    await open_node_accounts(ledger, node.did)
    try:
        yield Env(LedgerAccess(ledger, store, directory, dev_mode=dev_mode), store, node)
    finally:
        await store.close()


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with environment() as value:
        yield value


def agent(index: int) -> Caller:
    return Caller(did=AGENTS[index].did)


async def test_accounts_open_on_first_use_only_for_registered_agents(env: Env):
    account = await env.access.balance(agent(0), AGENTS[0].did)
    assert (account.owner, account.balance) == (AGENTS[0].did, 0)
    with pytest.raises(errors.UnknownAccount):
        await env.access.balance(Caller(did=STRANGER.did), STRANGER.did)
    with pytest.raises(NotAccountOwner):
        await env.access.balance(agent(1), AGENTS[0].did)
    assert (await env.access.balance(Caller(admin=True), AGENTS[0].did)).id == AGENTS[0].did
    settlement = await env.access.ledger.balance(settlement_account_id(env.node.did))
    assert settlement.owner == env.node.did


async def test_node_accounts_cannot_be_spent_through_the_api(env: Env):
    await env.access.issue(Caller(admin=True), AGENTS[0].did, 50)
    with pytest.raises(NotAccountOwner):
        await env.access.transfer(
            Caller(did=env.node.did),
            transfer_id="drain",
            debit_account=settlement_account_id(env.node.did),
            credit_account=AGENTS[0].did,
            amount=1,
        )
    with pytest.raises(NotAccountOwner):  # the operator reads but never spends agents' money
        await env.access.transfer(
            Caller(admin=True),
            transfer_id="op",
            debit_account=AGENTS[0].did,
            credit_account=AGENTS[1].did,
            amount=1,
        )
    with pytest.raises(Forbidden):
        await env.access.issue(agent(0), AGENTS[0].did, 50)


async def test_transfer_ids_are_required_and_restricted(env: Env):
    await env.access.issue(Caller(admin=True), AGENTS[0].did, 50)
    for bad, error in (
        ("", MissingTransferId),
        ("award:x", InvalidTransferId),
        ("x" * 101, InvalidTransferId),
        ("a b", InvalidTransferId),
    ):
        with pytest.raises(error):
            await env.access.transfer(
                agent(0),
                transfer_id=bad,
                debit_account=AGENTS[0].did,
                credit_account=AGENTS[1].did,
                amount=1,
            )
    assert (await env.access.balance(agent(0), AGENTS[0].did)).balance == 50


async def test_issuing_is_refused_outside_dev_mode():
    async with environment(dev_mode=False) as env:
        with pytest.raises(DevModeOnly):
            await env.access.issue(Caller(admin=True), AGENTS[0].did, 5)


operation = st.tuples(
    st.sampled_from(["transfer", "reserve", "post", "void"]),
    st.integers(0, 2),  # caller
    st.integers(0, 2),  # debit account owner
    st.integers(0, 2),  # credit account owner
    st.integers(-5, 80),  # amount
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=12))
async def test_only_owners_move_money_and_the_ledger_always_balances(ops):
    async with environment() as env:
        for index in range(len(AGENTS)):
            await env.access.issue(Caller(admin=True), AGENTS[index].did, 100)
        pendings: list[str] = []
        for step, (kind, who, debit, credit, amount) in enumerate(ops):
            before = {a.did: (await env.access.ledger.balance(a.did)) for a in AGENTS}
            caller, tid = agent(who), f"op{step}"
            try:
                if kind in ("transfer", "reserve"):
                    call = env.access.transfer if kind == "transfer" else env.access.reserve
                    result = await call(
                        caller,
                        transfer_id=tid,
                        debit_account=AGENTS[debit].did,
                        credit_account=AGENTS[credit].did,
                        amount=amount,
                    )
                    if kind == "reserve":
                        pendings.append(result.id)  # type: ignore[union-attr]
                elif pendings:
                    pending = pendings[amount % len(pendings)]
                    if kind == "post":
                        await env.access.post(caller, pending, transfer_id=tid)
                    else:
                        await env.access.void(caller, pending, transfer_id=tid)
            except CoralError:
                pass
            for a in AGENTS:
                now = await env.access.ledger.balance(a.did)
                spent = now.debits_posted + now.debits_pending
                if a.did != caller.did:
                    was = before[a.did]
                    assert spent <= was.debits_posted + was.debits_pending
            assert find_violations(await env.store.load_snapshot()) == []
