"""TeamLifecycle over the in-memory store twin: persistence, races and the escrow seam."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from team_builders import DEADLINE, MINUTE, T0, form_team, identity

from coral.protocol.errors import Conflict, CoralError
from coral.teams import (
    TeamLifecycle,
    accept,
    dissolve,
    invite,
    new_key_epoch,
    verify_team,
)
from coral.teams.errors import InvitationExpired, StaleKeyEpoch
from coral.teams.memory import MemoryTeamStore


class RecordingEscrow:
    """A TeamEscrow that remembers holds in memory (the real ledger sits behind this seam)."""

    def __init__(self) -> None:
        self.holds: dict[str, str] = {}
        self.calls: list[tuple[str, ...]] = []
        self.paid: dict[str, int] = {}
        self.on_reserve: Callable[[], Awaitable[None]] | None = None

    async def reserve_budget(
        self, team_id: str, payer_did: str, amount: int, currency: str, timeout_ms: int
    ) -> str:
        hold_id = f"hold-{len(self.holds) + 1}"
        self.holds[hold_id] = "pending"
        self.calls.append(("reserve", team_id, payer_did, str(amount), currency))
        assert timeout_ms > 0
        if self.on_reserve is not None:
            hook, self.on_reserve = self.on_reserve, None
            await hook()
        return hold_id

    async def pay_members(self, team_id: str, hold_id: str, shares: dict[str, int]) -> None:
        assert self.holds[hold_id] == "pending"
        self.holds[hold_id] = "posted"
        self.paid.update(shares)
        self.calls.append(("pay", hold_id))

    async def release(self, team_id: str, hold_id: str) -> None:
        assert self.holds[hold_id] == "pending"
        self.holds[hold_id] = "voided"
        self.calls.append(("release", hold_id))


@pytest.fixture
def store() -> MemoryTeamStore:
    """The in-memory twin: it passes the same port contract as SQLite (tests/teams/test_ports.py)."""
    return MemoryTeamStore()


async def test_formation_persists_and_reserves_the_budget_once(store: MemoryTeamStore) -> None:
    escrow = RecordingEscrow()
    lifecycle = TeamLifecycle(store, escrow)
    built = form_team(2)
    await lifecycle.propose(built.state.charter, T0)
    for document in built.documents:
        await lifecycle.submit(built.state.team_id, document, document.issued_at)
    assert [c[0] for c in escrow.calls] == ["reserve"]
    state = await lifecycle.state(built.state.team_id, built.now)
    assert state.snapshot() == built.state.snapshot()
    hold = await store.load_escrow(built.state.team_id)
    assert hold is not None and hold.outcome == "held"
    assert await lifecycle.settle(built.state.team_id, built.now) == "held"

    closing = dissolve(state, built.initiator, now_ms=built.tick(), goal_met=True)
    await lifecycle.submit(built.state.team_id, closing, built.now)
    assert escrow.paid == {m.did: 50 for m in built.members}
    assert escrow.holds[hold.hold_id] == "posted"
    assert (await store.load_escrow(built.state.team_id)).outcome == "paid"  # type: ignore[union-attr]
    assert await lifecycle.settle(built.state.team_id, built.now) == "paid"  # idempotent


async def test_cancellation_and_deadline_release_the_hold(store: MemoryTeamStore) -> None:
    escrow = RecordingEscrow()
    lifecycle = TeamLifecycle(store, escrow)
    for first_seed, close in ((1, "cancel"), (500, "deadline")):
        built = form_team(1, first_seed=first_seed)
        charter = built.state.charter.model_copy(
            update={"team_id": f"team-{close}", "signature": None}
        ).signed_by(built.initiator)
        await lifecycle.propose(charter, T0)
        state = await lifecycle.state(charter.team_id, T0)
        member = built.members[0]
        invitation = invite(
            state, built.initiator, invitee=member.did, role="worker", now_ms=T0 + 1, ttl_ms=MINUTE
        )
        await lifecycle.submit(charter.team_id, invitation, T0 + 1)
        await lifecycle.submit(
            charter.team_id,
            accept(invitation, member, price=5, currency="CRL", now_ms=T0 + 2),
            T0 + 2,
        )
        hold = await store.load_escrow(charter.team_id)
        assert hold is not None
        if close == "cancel":
            state = await lifecycle.state(charter.team_id, T0 + 3)
            await lifecycle.submit(
                charter.team_id,
                dissolve(state, built.initiator, now_ms=T0 + 3, goal_met=False),
                T0 + 3,
            )
        else:
            assert await lifecycle.settle(charter.team_id, DEADLINE - 1) == "held"
            assert await lifecycle.settle(charter.team_id, DEADLINE) == "released"
        assert escrow.holds[hold.hold_id] == "voided"


async def test_refused_document_stores_nothing(store: MemoryTeamStore) -> None:
    lifecycle = TeamLifecycle(store, RecordingEscrow())
    built = form_team(1, with_key=False)
    await lifecycle.propose(built.state.charter, T0)
    invitation = built.documents[0]
    await lifecycle.submit(built.state.team_id, invitation, invitation.issued_at)
    late = built.documents[1]
    with pytest.raises(InvitationExpired):
        await lifecycle.submit(built.state.team_id, late, T0 + 20 * MINUTE)
    record = await store.load_record(built.state.team_id)
    assert record.documents == (invitation,)
    assert await store.load_escrow(built.state.team_id) is None


async def test_racing_first_acceptances_keep_exactly_one_hold(store: MemoryTeamStore) -> None:
    escrow = RecordingEscrow()
    lifecycle = TeamLifecycle(store, escrow)
    built = form_team(0, with_key=False)
    team_id = built.state.team_id
    await lifecycle.propose(built.state.charter, T0)
    answers = []
    for n in (700, 701):
        member = identity(n)
        invitation = built.add(
            invite(
                built.state,
                built.initiator,
                invitee=member.did,
                role="worker",
                now_ms=built.tick(),
                ttl_ms=MINUTE,
            )
        )
        await lifecycle.submit(team_id, invitation, built.now)
        answers.append(accept(invitation, member, price=5, currency="CRL", now_ms=built.tick()))

    async def rival_accepts_meanwhile() -> None:
        await lifecycle.submit(team_id, answers[1], built.now)

    escrow.on_reserve = rival_accepts_meanwhile
    with pytest.raises(Conflict):
        await lifecycle.submit(team_id, answers[0], built.now)
    assert escrow.holds == {"hold-1": "voided", "hold-2": "pending"}
    assert (await store.load_escrow(team_id)).hold_id == "hold-2"  # type: ignore[union-attr]
    # The loser simply retries on the new state.
    await lifecycle.submit(team_id, answers[0], built.now)
    assert len(escrow.holds) == 2


async def test_concurrent_rekeys_one_wins_the_other_retries(store: MemoryTeamStore) -> None:
    lifecycle = TeamLifecycle(store)
    built = form_team(2)
    team_id = built.state.team_id
    await lifecycle.propose(built.state.charter, T0)
    for document in built.documents:
        await lifecycle.submit(team_id, document, document.issued_at)
    state = await lifecycle.state(team_id, built.tick())
    first, _ = new_key_epoch(state, built.initiator, built.now)
    second, _ = new_key_epoch(state, built.initiator, built.now)
    await lifecycle.submit(team_id, first, built.now)
    with pytest.raises(StaleKeyEpoch):
        await lifecycle.submit(team_id, second, built.now)
    retry, _ = new_key_epoch(await lifecycle.state(team_id, built.now), built.initiator, built.now)
    await lifecycle.submit(team_id, retry, built.now)
    latest = await store.latest_key_epoch(team_id)
    assert latest == retry and latest.epoch == 3
    verify_team(await store.load_record(team_id), built.now)


async def test_duplicate_team_and_unknown_team_are_typed_errors(store: MemoryTeamStore) -> None:
    lifecycle = TeamLifecycle(store)
    built = form_team(0, with_key=False)
    await lifecycle.propose(built.state.charter, T0)
    with pytest.raises(Conflict):
        await lifecycle.propose(built.state.charter, T0)
    with pytest.raises(CoralError):
        await lifecycle.state("team-nobody", T0)
    state = await lifecycle.state(built.state.team_id, T0)
    assert set(state.current_members(T0)) == {built.initiator.did}
