"""The node's team wiring without HTTP: escrow over the real ledger, index, admission.

Real SQLite files, real ledger service, real signatures throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coral.agents.directory import AgentDirectory
from coral.coordination.service import CoordinationService
from coral.ledger.errors import ExceedsCredits
from coral.ledger.service import LedgerService
from coral.ledger.team_escrow import LedgerTeamEscrow
from coral.protocol.agent import AgentManifest, AgentRecord, sign_record_as_agent
from coral.protocol.errors import CoralError
from coral.protocol.identity import Identity
from coral.protocol.message import DataPart, Message, Part, TextPart, new_message_id, now_ms
from coral.protocol.signing import sign_message
from coral.store.agents_sqlite import SqliteAgentStore
from coral.store.coordination_sqlite import SqliteCoordinationStore
from coral.store.ledger_sqlite import SqliteLedgerStore
from coral.store.sqlite import SqliteDatabase
from coral.store.teams_sqlite import SqliteTeamIndex, SqliteTeamStore
from coral.teams import (
    Money,
    RoleSpec,
    TeamKey,
    TeamLifecycle,
    TeamState,
    accept,
    build_team_message,
    certify,
    dissolve,
    draft_charter,
    invite,
    new_key_epoch,
    remove,
)
from coral.teams.service import TeamsService


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


@dataclass
class Parts:
    service: TeamsService
    team_id: str
    thread_id: str
    keys: dict[int, TeamKey]
    people: dict[str, Identity]


async def _register(directory: AgentDirectory, node: Identity, who: Identity, name: str) -> None:
    record = AgentRecord(
        agent=who.did,
        home_node=node.did,
        manifest=AgentManifest(name=name),
        version=1,
        updated_at=now_ms(),
    )
    await directory.register(sign_record_as_agent(record, who))


@pytest.fixture
async def bound_team(tmp_path: Path) -> AsyncIterator[Parts]:
    """alice leads bob and carol (dave was removed) at key epoch 2, with a bound thread."""
    db = SqliteDatabase(tmp_path / "node.db")
    await db.open()
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
    service = TeamsService(store, index, directory, coordination)
    people = {n: Identity.generate() for n in ("alice", "bob", "carol", "dave", "eve")}
    for name, who in people.items():
        await _register(directory, node, who, name)
    alice = people["alice"]
    now = now_ms()
    charter = draft_charter(
        alice,
        goal="g",
        roles=(RoleSpec(name="worker", count=3),),
        budget=Money(amount=9),
        deadline_ms=now + 600_000,
        now_ms=now,
    )
    state = await service.propose(charter)
    team_id = charter.team_id
    for name in ("bob", "carol", "dave"):
        invitation = invite(
            state, alice, invitee=people[name].did, role="worker", now_ms=now_ms(), ttl_ms=60_000
        )
        state = await service.submit(team_id, invitation)
        acceptance = accept(invitation, people[name], price=1, currency="CRL", now_ms=now_ms())
        state = await service.submit(team_id, acceptance)
        state = await service.submit(team_id, certify(state, acceptance, alice, now_ms=now_ms()))
    keys: dict[int, TeamKey] = {}
    epoch_doc, keys[1] = new_key_epoch(state, alice, now_ms())
    state = await service.submit(team_id, epoch_doc)
    state = await service.submit(team_id, remove(state, people["dave"].did, alice, now_ms=now_ms()))
    epoch_doc, keys[2] = new_key_epoch(state, alice, now_ms())
    state = await service.submit(team_id, epoch_doc)
    create = _signed(
        alice,
        kind="thread.create",
        thread=None,
        parts=(
            DataPart(
                data={
                    "name": "t",
                    "participants": [people["bob"].did, people["carol"].did],
                    "team_id": team_id,
                }
            ),
        ),
    )
    await service.admit(create)
    yield Parts(service, team_id, create.id, keys, people)
    await db.close()


def _signed(who: Identity, *, kind: str, thread: str | None, parts: tuple[Part, ...]) -> Message:
    now = now_ms()
    message = Message(
        id=new_message_id(now),
        kind=kind,
        sender=who.did,
        thread=thread,
        created_at=now,
        parts=parts,
    )
    return sign_message(message, who)


async def _reason(service: TeamsService, message: Message) -> str:
    try:
        await service.admit(message)
    except CoralError as exc:
        return exc.reason
    return "admitted"


async def test_team_thread_admits_only_members_posting_ciphertext_under_the_current_epoch(
    bound_team: Parts,
):
    t = bound_team
    text = (TextPart(text="secret"),)
    expected = {
        # (sender, epoch of the key used) -> outcome; epoch 0 means a plaintext post
        ("alice", 2): "admitted",
        ("bob", 2): "admitted",
        ("carol", 1): "stale_key_epoch",
        ("bob", 0): "invalid_team_document",
        ("dave", 1): "not_a_member",
        ("dave", 0): "not_a_member",
        ("eve", 0): "not_a_member",
    }
    for (name, epoch), outcome in expected.items():
        who = t.people[name]
        if epoch == 0:
            message = _signed(who, kind="message", thread=t.thread_id, parts=text)
        else:
            message = build_team_message(
                t.keys[epoch], who, thread=t.thread_id, parts=text, now_ms=now_ms()
            )
        assert await _reason(t.service, message) == outcome, (name, epoch)
    # Ciphertext plus a clear part next to it is refused too.
    sealed = build_team_message(
        t.keys[2], t.people["bob"], thread=t.thread_id, parts=text, now_ms=now_ms()
    )
    mixed = _signed(
        t.people["bob"],
        kind="team.message",
        thread=t.thread_id,
        parts=(*sealed.parts, TextPart(text="leak")),
    )
    assert await _reason(t.service, mixed) == "invalid_team_document"


async def test_thread_operations_in_a_team_thread_follow_team_authority(bound_team: Parts):
    t = bound_team
    p = t.people

    def op(who: str, kind: str, agent: str | None = None) -> Message:
        data = {"agent": p[agent].did} if agent else {"summary": ""}
        return _signed(p[who], kind=kind, thread=t.thread_id, parts=(DataPart(data=data),))

    assert await _reason(t.service, op("bob", "thread.add_participant", "eve")) == "not_authorized"
    assert await _reason(t.service, op("alice", "thread.add_participant", "eve")) == "not_a_member"
    assert await _reason(t.service, op("bob", "thread.remove_participant", "carol")) == (
        "not_authorized"
    )
    assert await _reason(t.service, op("bob", "thread.remove_participant", "bob")) == "admitted"
    assert await _reason(t.service, op("alice", "thread.remove_participant", "bob")) == "admitted"
    assert await _reason(t.service, op("bob", "thread.close")) == "not_authorized"
    assert await _reason(t.service, op("alice", "thread.close")) == "admitted"

    def create(who: str, members: list[str]) -> Message:
        args = {"name": "x", "participants": [p[m].did for m in members], "team_id": t.team_id}
        return _signed(p[who], kind="thread.create", thread=None, parts=(DataPart(data=args),))

    assert await _reason(t.service, create("bob", ["alice", "carol"])) == "not_authorized"
    assert await _reason(t.service, create("alice", ["bob", "carol", "dave"])) == "not_a_member"
    assert await _reason(t.service, create("alice", ["bob", "carol"])) == "admitted"
    assert len(await t.service.index.threads_of_team(t.team_id)) == 2


async def test_sweep_releases_the_hold_of_a_team_that_passed_its_deadline(env: Env, tmp_path: Path):
    db = SqliteDatabase(tmp_path / "services.db")
    await db.open()
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
        ahead = [0]  # how far the service's clock runs ahead of the real one
        service = TeamsService(
            store, index, directory, coordination, clock=lambda: now_ms() + ahead[0]
        )
        service.attach_escrow(LedgerTeamEscrow(env.ledger))
        await _register(directory, node, env.alice, "alice")
        now = now_ms()
        charter = draft_charter(
            env.alice,
            goal="quick",
            roles=(RoleSpec(name="worker"),),
            budget=Money(amount=30),
            deadline_ms=now + 60_000,
            now_ms=now,
        )
        state = await service.propose(charter)
        invitation = invite(
            state, env.alice, invitee=env.bob.did, role="worker", now_ms=now, ttl_ms=500
        )
        await service.submit(charter.team_id, invitation)
        await service.submit(
            charter.team_id,
            accept(invitation, env.bob, price=3, currency="CRL", now_ms=now_ms()),
        )
        assert (await env.ledger.balance(env.alice.did)).available == 70
        assert await service.settle_due() == 0  # still open: the hold stays
        ahead[0] = charter.deadline_ms - now + 1  # the deadline has passed
        assert await service.settle_due() == 1
        assert (await env.ledger.balance(env.alice.did)).available == 100
        hold = await store.load_escrow(charter.team_id)
        assert hold is not None and hold.outcome == "released"
        assert await service.settle_due() == 0
    finally:
        await db.close()


async def test_wait_view_wakes_on_a_thread_bind_and_survives_cancelled_waiters(
    bound_team: Parts,
):
    t = bound_team
    alice = t.people["alice"]
    view = await t.service.view(t.team_id, alice.did)
    # Twelve documents after the charter, and one bound thread.
    assert (len(view.record.documents), view.thread_ids, view.revision) == (12, [t.thread_id], 13)
    assert (
        await t.service.wait_view(t.team_id, alice.did, after_revision=12, timeout_ms=1)
    ) == view

    cancelled = asyncio.create_task(
        t.service.wait_view(t.team_id, alice.did, after_revision=13, timeout_ms=60_000)
    )
    waiter = asyncio.create_task(
        t.service.wait_view(t.team_id, t.people["bob"].did, after_revision=13, timeout_ms=60_000)
    )
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    members = [t.people["bob"].did, t.people["carol"].did]
    second = _signed(
        alice,
        kind="thread.create",
        thread=None,
        parts=(DataPart(data={"name": "t2", "participants": members, "team_id": t.team_id}),),
    )
    await t.service.admit(second)
    woken = await asyncio.wait_for(waiter, 30)
    assert woken.revision == 14 and woken.thread_ids[-1] == second.id
