"""A cancelled propose or submit never leaves a team half-written.

Real SQLite stores and the real ledger; each test cancels the caller while
one step (a store, index or escrow call) is parked at a gate, then checks that
the record, the party index, the cached state and the budget hold agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coral.agents.directory import AgentDirectory
from coral.coordination.service import CoordinationService
from coral.ledger.errors import LedgerError
from coral.ledger.service import LedgerService
from coral.ledger.team_escrow import LedgerTeamEscrow
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.identity import Identity
from coral.protocol.message import now_ms
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
from coral.teams import (
    Invitation,
    MembershipCertificate,
    Money,
    RoleSpec,
    TeamCharter,
    TeamLifecycle,
    TeamState,
    accept,
    certify,
    dissolve,
    draft_charter,
    invite,
)
from coral.teams.service import TeamsService
from tests.support.gates import Gated, cancel_at

BUDGET = 40


@dataclass
class World:
    service: TeamsService
    store: Gated
    index: Gated
    escrow: Gated
    ledger: LedgerService
    alice: Identity
    bob: Identity


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
    ledger_store = await SqliteLedgerStore.open(tmp_path / "ledger.db")
    try:
        agents = SqliteAgentStore(db)
        await agents.open()
        node = Identity.generate()
        directory = AgentDirectory(agents, node, now_ms)
        coordination_store = SqliteCoordinationStore(db)
        await coordination_store.migrate()
        coordination = CoordinationService(coordination_store, node_id=node.did, clock=now_ms)
        store = SqliteTeamStore(db)
        await store.migrate()
        index = SqliteTeamIndex(db)
        await index.migrate()
        ledger = LedgerService(ledger_store, Identity.generate(), now_ms)
        alice, bob = Identity.generate(), Identity.generate()
        await ledger.open_account(alice.did, owner=alice.did)
        await ledger.issue(alice.did, 100)
        for name, who in (("alice", alice), ("bob", bob)):
            record = AgentRecord(
                agent=who.did,
                home_node=node.did,
                manifest=AgentManifest(name=name),
                version=1,
                updated_at=now_ms(),
            )
            await directory.register(sign_record_as_agent(record, who))
        gated_store, gated_index = Gated(store), Gated(index)
        gated_escrow = Gated(LedgerTeamEscrow(ledger))
        service = TeamsService(
            gated_store, gated_index, directory, coordination, escrow=gated_escrow
        )
        yield World(service, gated_store, gated_index, gated_escrow, ledger, alice, bob)
    finally:
        await ledger_store.close()
        await db.close()


def charter_of(world: World) -> TeamCharter:
    now = now_ms()
    return draft_charter(
        world.alice,
        goal="g",
        roles=(RoleSpec(name="worker"),),
        budget=Money(amount=BUDGET),
        deadline_ms=now + 600_000,
        now_ms=now,
    )


async def assert_consistent(world: World, team_id: str) -> None:
    """Every party the record names is indexed, the cache is the store, the hold is booked."""
    record = await world.store.load_record(team_id)
    parties = {record.charter.initiator}
    for document in record.documents:
        if isinstance(document, Invitation):
            parties.add(document.invitee)
        elif isinstance(document, MembershipCertificate):
            parties.add(document.member)
    for did in parties:
        assert await world.service.record(team_id, did) == record  # no NotAMember
    cached = await world.service.state(team_id)
    replayed = await world.service.lifecycle.state(team_id, now_ms())
    assert cached.snapshot() == replayed.snapshot()
    hold = await world.store.load_escrow(team_id)
    available = (await world.ledger.balance(world.alice.did)).available
    assert available == (100 - BUDGET if hold is not None and hold.outcome == "held" else 100)


@pytest.mark.parametrize("gate, method", [("store", "create_team"), ("index", "add_party")])
async def test_cancelled_propose_stores_and_indexes_the_initiator(
    world: World, gate: str, method: str
):
    charter = charter_of(world)
    await cancel_at(getattr(world, gate), method, world.service.propose(charter))
    assert await world.index.is_party(charter.team_id, world.alice.did)
    await assert_consistent(world, charter.team_id)


@pytest.mark.parametrize(
    "gate, method",
    [("store", "load_record"), ("store", "append_document"), ("index", "add_party")],
)
async def test_cancelled_invitation_is_stored_with_its_invitee_indexed(
    world: World, gate: str, method: str
):
    charter = charter_of(world)
    state = await world.service.propose(charter)
    invitation = invite(
        state, world.alice, invitee=world.bob.did, role="worker", now_ms=now_ms(), ttl_ms=60_000
    )
    await cancel_at(getattr(world, gate), method, world.service.submit(charter.team_id, invitation))
    assert len((await world.store.load_record(charter.team_id)).documents) == 1
    await assert_consistent(world, charter.team_id)


async def invited(world: World) -> tuple[TeamState, Invitation]:
    charter = charter_of(world)
    state = await world.service.propose(charter)
    invitation = invite(
        state, world.alice, invitee=world.bob.did, role="worker", now_ms=now_ms(), ttl_ms=60_000
    )
    return await world.service.submit(charter.team_id, invitation), invitation


@pytest.mark.parametrize(
    "gate, method", [("escrow", "reserve_budget"), ("store", "append_document")]
)
async def test_cancelled_acceptance_records_the_hold_it_reserved(
    world: World, gate: str, method: str
):
    state, invitation = await invited(world)
    acceptance = accept(invitation, world.bob, price=5, currency="CRL", now_ms=now_ms())
    await cancel_at(getattr(world, gate), method, world.service.submit(state.team_id, acceptance))
    hold = await world.store.load_escrow(state.team_id)
    assert hold is not None and hold.outcome == "held"
    await assert_consistent(world, state.team_id)


async def test_lifecycle_cancelled_while_reserving_leaves_no_orphan_hold(world: World):
    state, invitation = await invited(world)
    acceptance = accept(invitation, world.bob, price=5, currency="CRL", now_ms=now_ms())
    lifecycle = TeamLifecycle(world.store, world.escrow)
    await cancel_at(
        world.escrow, "reserve_budget", lifecycle.submit(state.team_id, acceptance, now_ms())
    )
    hold = await world.store.load_escrow(state.team_id)
    assert hold is not None and hold.outcome == "held"
    assert (await world.ledger.balance(world.alice.did)).available == 100 - BUDGET
    # The recorded hold is the ledger's: releasing it returns the whole budget.
    await LedgerTeamEscrow(world.ledger).release(state.team_id, hold.hold_id)
    assert (await world.ledger.balance(world.alice.did)).available == 100


async def formed(world: World) -> TeamState:
    state, invitation = await invited(world)
    acceptance = accept(invitation, world.bob, price=5, currency="CRL", now_ms=now_ms())
    state = await world.service.submit(state.team_id, acceptance)
    certificate = certify(state, acceptance, world.alice, now_ms=now_ms())
    return await world.service.submit(state.team_id, certificate)


async def test_cancelled_certificate_indexes_the_member(world: World):
    state, invitation = await invited(world)
    acceptance = accept(invitation, world.bob, price=5, currency="CRL", now_ms=now_ms())
    state = await world.service.submit(state.team_id, acceptance)
    certificate = certify(state, acceptance, world.alice, now_ms=now_ms())
    await cancel_at(world.index, "add_party", world.service.submit(state.team_id, certificate))
    assert world.bob.did in (await world.service.state(state.team_id)).members
    await assert_consistent(world, state.team_id)


async def test_cancelled_dissolution_settles_its_hold(world: World):
    state = await formed(world)
    dissolution = dissolve(state, world.alice, now_ms=now_ms(), goal_met=True)
    await cancel_at(world.escrow, "pay_members", world.service.submit(state.team_id, dissolution))
    hold = await world.store.load_escrow(state.team_id)
    assert hold is not None and hold.outcome == "paid"
    assert (await world.ledger.balance(world.bob.did)).balance == 5
    assert (await world.ledger.balance(world.alice.did)).available == 95
    cached = await world.service.state(state.team_id)
    assert cached.dissolution is not None
    assert (
        cached.snapshot()
        == (await world.service.lifecycle.state(state.team_id, now_ms())).snapshot()
    )


async def test_refused_payout_leaves_the_cache_matching_the_stored_dissolution(world: World):
    state = await formed(world)
    hold = await world.store.load_escrow(state.team_id)
    assert hold is not None
    # The hold is voided behind the service's back, so the payout will be refused.
    await world.ledger.void(hold.hold_id, transfer_id=f"{hold.hold_id}.void")
    dissolution = dissolve(state, world.alice, now_ms=now_ms(), goal_met=True)
    with pytest.raises(LedgerError):
        await world.service.submit(state.team_id, dissolution)
    cached = await world.service.state(state.team_id)
    assert cached.dissolution is not None  # the dissolution is stored; the cache says so
    assert (
        cached.snapshot()
        == (await world.service.lifecycle.state(state.team_id, now_ms())).snapshot()
    )
