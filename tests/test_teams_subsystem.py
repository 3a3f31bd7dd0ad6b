"""The node's team wiring without HTTP: escrow over the real ledger, index, admission.

Real SQLite files, real ledger service, real signatures throughout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coral.ledger.errors import ExceedsCredits
from coral.ledger.service import LedgerService
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_sqlite import SqliteTeamStore
from coral.teams import (
    Money,
    RoleSpec,
    TeamLifecycle,
    TeamState,
    accept,
    certify,
    dissolve,
    draft_charter,
    invite,
)
from coral.teams_subsystem import LedgerTeamEscrow, SqliteTeamIndex


@dataclass
class Env:
    store: SqliteTeamStore
    ledger: LedgerService
    lifecycle: TeamLifecycle
    alice: Identity
    bob: Identity
    carol: Identity


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    store = SqliteTeamStore(db)
    await store.migrate()
    ledger_store = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    ledger = LedgerService(ledger_store, Identity.generate(), now_ms)
    alice, bob, carol = Identity.generate(), Identity.generate(), Identity.generate()
    await ledger.open_account(alice.did, owner=alice.did)
    await ledger.issue(alice.did, 100)
    lifecycle = TeamLifecycle(store, LedgerTeamEscrow(ledger))
    yield Env(store, ledger, lifecycle, alice, bob, carol)
    await ledger_store.close()
    await db.close()


async def formed(env: Env, budget: int, prices: dict[Identity, int]) -> TeamState:
    """Propose a team with one worker seat per priced member, accept and certify them all."""
    now = now_ms()
    charter = draft_charter(
        env.alice,
        goal="g",
        roles=(RoleSpec(name="worker", count=len(prices)),),
        budget=Money(amount=budget),
        deadline_ms=now + 600_000,
        now_ms=now,
    )
    state = await env.lifecycle.propose(charter, now)
    for member, price in prices.items():
        invitation = invite(
            state, env.alice, invitee=member.did, role="worker", now_ms=now_ms(), ttl_ms=60_000
        )
        state = await env.lifecycle.submit(charter.team_id, invitation, now_ms())
        acceptance = accept(invitation, member, price=price, currency="CRL", now_ms=now_ms())
        state = await env.lifecycle.submit(charter.team_id, acceptance, now_ms())
        certificate = certify(state, acceptance, env.alice, now_ms=now_ms())
        state = await env.lifecycle.submit(charter.team_id, certificate, now_ms())
    return state


async def test_budget_is_held_then_shares_paid_once_and_rest_returned(env: Env):
    state = await formed(env, 60, {env.bob: 20, env.carol: 15})
    alice = await env.ledger.balance(env.alice.did)
    assert (alice.balance, alice.available) == (100, 40)  # the whole budget is held

    await env.lifecycle.submit(
        state.team_id, dissolve(state, env.alice, now_ms=now_ms(), goal_met=True), now_ms()
    )
    assert (await env.ledger.balance(env.bob.did)).balance == 20
    assert (await env.ledger.balance(env.carol.did)).balance == 15
    alice = await env.ledger.balance(env.alice.did)
    assert (alice.balance, alice.available) == (65, 65)
    assert (await env.ledger.balance(f"team:{state.team_id}")).balance == 0

    # Settling again, even straight through the escrow, moves no money twice.
    assert await env.lifecycle.settle(state.team_id, now_ms()) == "paid"
    hold = await env.store.load_escrow(state.team_id)
    assert hold is not None
    escrow = LedgerTeamEscrow(env.ledger)
    await escrow.pay_members(state.team_id, hold.hold_id, {env.bob.did: 20, env.carol.did: 15})
    assert (await env.ledger.balance(env.bob.did)).balance == 20
    assert (await env.ledger.balance(env.alice.did)).balance == 65


async def test_cancelled_team_releases_the_whole_hold(env: Env):
    state = await formed(env, 50, {env.bob: 10})
    assert (await env.ledger.balance(env.alice.did)).available == 50
    await env.lifecycle.submit(
        state.team_id, dissolve(state, env.alice, now_ms=now_ms(), goal_met=False), now_ms()
    )
    alice = await env.ledger.balance(env.alice.did)
    assert (alice.balance, alice.available) == (100, 100)
    hold = await env.store.load_escrow(state.team_id)
    assert hold is not None and hold.outcome == "released"
    await LedgerTeamEscrow(env.ledger).release(state.team_id, hold.hold_id)  # idempotent


async def test_acceptance_is_refused_when_the_initiator_cannot_fund_the_budget(env: Env):
    now = now_ms()
    charter = draft_charter(
        env.alice,
        goal="g",
        roles=(RoleSpec(name="worker"),),
        budget=Money(amount=500),
        deadline_ms=now + 600_000,
        now_ms=now,
    )
    state = await env.lifecycle.propose(charter, now)
    invitation = invite(
        state, env.alice, invitee=env.bob.did, role="worker", now_ms=now, ttl_ms=60_000
    )
    await env.lifecycle.submit(charter.team_id, invitation, now_ms())
    acceptance = accept(invitation, env.bob, price=5, currency="CRL", now_ms=now_ms())
    with pytest.raises(ExceedsCredits):
        await env.lifecycle.submit(charter.team_id, acceptance, now_ms())
    record = await env.store.load_record(charter.team_id)
    assert len(record.documents) == 1  # the acceptance was not stored
    assert await env.store.load_escrow(charter.team_id) is None


async def test_index_binds_each_thread_once_and_lists_parties(tmp_path: Path):
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    try:
        index = SqliteTeamIndex(db)
        assert await index.migrate() == 1
        await index.bind_thread("t1", "team-a")
        await index.bind_thread("t2", "team-a")
        with pytest.raises(Exception) as info:
            await index.bind_thread("t1", "team-b")
        assert getattr(info.value, "reason", "") == "bound"
        assert await index.team_of_thread("t1") == "team-a"
        assert await index.team_of_thread("nope") is None
        assert await index.threads_of_team("team-a") == ["t1", "t2"]
        await index.add_party("team-a", "did:x")
        await index.add_party("team-a", "did:x")
        await index.add_party("team-b", "did:x")
        assert await index.teams_of("did:x") == ["team-a", "team-b"]
        assert await index.is_party("team-a", "did:x")
        assert not await index.is_party("team-a", "did:y")
    finally:
        await db.close()
