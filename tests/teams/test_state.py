"""TeamState: formation works, and every attack is refused with the state unchanged."""

from __future__ import annotations

import pytest
from team_builders import DEADLINE, MINUTE, T0, Team, form_team, identity

from coral.protocol.errors import CoralError, Expired, Forbidden, FromFuture, SignatureError
from coral.teams import (
    Acceptance,
    MembershipCertificate,
    Payout,
    RoleSpec,
    TeamState,
    accept,
    certify,
    dissolve,
    draft_charter,
    invite,
    new_key_epoch,
    refuse,
    remove,
)
from coral.teams.documents import Money
from coral.teams.errors import (
    AlreadyAnswered,
    AlreadyMember,
    InvalidTeamDocument,
    InvitationExpired,
    InvitationReplayed,
    NotAMember,
    NotAuthorized,
    NotTheInvitee,
    OverBudget,
    PriceAboveRoleMax,
    RekeyRequired,
    RoleFull,
    StaleKeyEpoch,
    TeamDissolved,
    TeamExpired,
    UnknownReference,
    WrongTeam,
)


def refused(team: Team, document: object, error: type[CoralError], *, live: bool = True) -> None:
    """Apply must raise ``error`` and leave the state exactly as it was."""
    before = team.state.snapshot()
    with pytest.raises(error):
        team.state.apply(document, team.now, live=live)  # type: ignore[arg-type]
    assert team.state.snapshot() == before


def test_formation_certifies_every_acceptor_and_seals_epoch_one(team: Team) -> None:
    members = team.state.current_members(team.now)
    assert set(members) == {team.initiator.did} | {m.did for m in team.members}
    assert team.state.key_epoch == 1
    assert team.state.key_recipients == frozenset(members)
    assert team.state.committed_spend() == 150


def test_forged_acceptance_is_refused() -> None:
    team = form_team(0, roles=(RoleSpec(name="worker", count=2),), with_key=False)
    invitee, impostor = identity(50), identity(51)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    genuine = accept(invitation, invitee, price=1, currency="CRL", now_ms=team.tick())
    forged = genuine.model_copy(
        update={
            "signature": accept(
                invitation, impostor, price=1, currency="CRL", now_ms=team.now
            ).signature
        }
    )
    refused(team, forged, SignatureError)
    # The impostor answering in its own name is not the invitee either.
    refused(
        team, accept(invitation, impostor, price=1, currency="CRL", now_ms=team.now), NotTheInvitee
    )


def test_acceptance_after_expiry_is_refused_live_and_offline() -> None:
    team = form_team(0, with_key=False)
    invitee = identity(60)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    late = accept(invitation, invitee, price=1, currency="CRL", now_ms=team.now + 2 * MINUTE)
    team.tick(3 * MINUTE)
    refused(team, late, InvitationExpired)
    refused(team, late, InvitationExpired, live=False)
    # Backdating the acceptance does not help while the node is the one checking.
    backdated = accept(invitation, invitee, price=1, currency="CRL", now_ms=invitation.issued_at)
    refused(team, backdated, InvitationExpired)


def test_acceptance_of_another_teams_invitation_is_refused() -> None:
    ours = form_team(0, with_key=False)
    theirs = form_team(0, with_key=False, first_seed=100)
    invitee = identity(70)
    their_invitation = theirs.add(
        invite(
            theirs.state,
            theirs.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=theirs.tick(),
            ttl_ms=MINUTE,
        )
    )
    acceptance = accept(their_invitation, invitee, price=1, currency="CRL", now_ms=theirs.tick())
    # Same team id, different charter: the invitation is unknown here.
    refused(ours, acceptance, UnknownReference)
    relabelled = acceptance.model_copy(update={"team_id": "team-other"})
    refused(ours, relabelled, SignatureError)


def test_replayed_invitation_id_is_refused(team: Team) -> None:
    invitee = identity(80)
    first = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
            invitation_id="once",
        )
    )
    again = invite(
        team.state,
        team.initiator,
        invitee=identity(81).did,
        role="worker",
        now_ms=team.tick(),
        ttl_ms=MINUTE,
        invitation_id="once",
    )
    refused(team, again, InvitationReplayed)
    refused(team, first, InvitationReplayed)


def test_tampered_charter_does_not_verify() -> None:
    team = form_team(1)
    tampered = team.state.charter.model_copy(update={"budget": Money(amount=10**9)})
    with pytest.raises(SignatureError):
        TeamState(tampered, team.now)


def test_certificate_signed_by_non_initiator_is_refused() -> None:
    team = form_team(1, with_key=False)
    invitee, outsider = identity(90), identity(91)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    acceptance = team.add(accept(invitation, invitee, price=1, currency="CRL", now_ms=team.tick()))
    refused(team, certify(team.state, acceptance, outsider, now_ms=team.tick()), NotAuthorized)
    # A plain (not empowered) member may not certify either.
    refused(team, certify(team.state, acceptance, team.members[0], now_ms=team.now), NotAuthorized)
    # Nor may the invitee certify itself.
    refused(team, certify(team.state, acceptance, invitee, now_ms=team.now), NotAuthorized)


def test_certificate_of_another_team_is_refused() -> None:
    ours = form_team(1, with_key=False)
    theirs = form_team(1, with_key=False, first_seed=200)
    their_certificate = theirs.documents[-1]
    assert isinstance(their_certificate, MembershipCertificate)
    refused(ours, their_certificate, NotAuthorized)
    renamed = draft_charter(
        identity(300),
        goal="x",
        roles=(RoleSpec(name="worker"),),
        budget=Money(amount=10),
        deadline_ms=DEADLINE,
        now_ms=T0,
        team_id="team-elsewhere",
    )
    elsewhere = TeamState(renamed, T0)
    before = elsewhere.snapshot()
    with pytest.raises(WrongTeam):
        elsewhere.apply(their_certificate, T0 + MINUTE)
    assert elsewhere.snapshot() == before


def test_nothing_applies_to_a_dissolved_team(team: Team) -> None:
    certificate = team.documents[2]
    team.add(dissolve(team.state, team.initiator, now_ms=team.tick(), goal_met=True))
    assert team.state.current_members(team.now) == {}
    refused(team, certificate, TeamDissolved)
    late_invite = invite(
        team.state,
        team.initiator,
        invitee=identity(99).did,
        role="worker",
        now_ms=team.now,
        ttl_ms=MINUTE,
    )
    refused(team, late_invite, TeamDissolved)
    with pytest.raises(TeamDissolved):
        team.state.authorize_post(team.initiator.did, team.state.key_epoch, team.now)


def test_only_the_initiator_dissolves_and_payouts_stay_within_budget(team: Team) -> None:
    refused(
        team,
        dissolve(team.state, team.members[0], now_ms=team.tick(), goal_met=False),
        NotAuthorized,
    )
    greedy = (Payout(member=team.members[0].did, amount=10**6),)
    refused(
        team,
        dissolve(team.state, team.initiator, now_ms=team.now, goal_met=True, payouts=greedy),
        OverBudget,
    )
    outsider = (Payout(member=identity(98).did, amount=1),)
    refused(
        team,
        dissolve(team.state, team.initiator, now_ms=team.now, goal_met=True, payouts=outsider),
        NotAMember,
    )


def test_non_member_posting_is_refused(team: Team) -> None:
    with pytest.raises(NotAMember):
        team.state.authorize_post(identity(97).did, 1, team.now)
    team.state.authorize_post(team.members[0].did, 1, team.now)
    with pytest.raises(StaleKeyEpoch):
        team.state.authorize_post(team.members[0].did, 0, team.now)


def test_removal_blocks_posting_until_rekey(team: Team) -> None:
    gone = team.members[0]
    team.add(remove(team.state, gone.did, team.initiator, now_ms=team.tick()))
    with pytest.raises(NotAMember):
        team.state.authorize_post(gone.did, 1, team.now)
    with pytest.raises(RekeyRequired):
        team.state.authorize_post(team.members[1].did, 1, team.now)
    epoch, _ = new_key_epoch(team.state, team.initiator, team.tick())
    team.add(epoch)
    team.state.authorize_post(team.members[1].did, 2, team.now)
    assert gone.did not in team.state.key_recipients


def test_member_may_leave_but_not_remove_others(team: Team) -> None:
    refused(
        team,
        remove(team.state, team.members[1].did, team.members[0], now_ms=team.tick()),
        NotAuthorized,
    )
    refused(
        team, remove(team.state, team.initiator.did, team.initiator, now_ms=team.now), NotAuthorized
    )
    team.add(remove(team.state, team.members[0].did, team.members[0], now_ms=team.now))
    assert team.members[0].did not in team.state.members
    refused(
        team, remove(team.state, team.members[0].did, team.initiator, now_ms=team.now), NotAMember
    )


def test_empowered_member_invites_and_certifies_but_not_removes_its_peers() -> None:
    roles = (RoleSpec(name="lead", count=2), RoleSpec(name="worker", count=2))
    team = form_team(3, roles=roles, empowered_roles=("lead",), with_key=False)
    lead, other_lead, worker = team.members
    newcomer = identity(400)
    invitation = team.add(
        invite(
            team.state, lead, invitee=newcomer.did, role="worker", now_ms=team.tick(), ttl_ms=MINUTE
        )
    )
    acceptance = team.add(accept(invitation, newcomer, price=5, currency="CRL", now_ms=team.tick()))
    team.add(certify(team.state, acceptance, lead, now_ms=team.tick()))
    assert team.state.members[newcomer.did].role == "worker"
    refused(team, remove(team.state, other_lead.did, lead, now_ms=team.tick()), NotAuthorized)
    team.add(remove(team.state, worker.did, lead, now_ms=team.now))
    # A removed lead loses its authority at once.
    team.add(remove(team.state, lead.did, team.initiator, now_ms=team.tick()))
    refused(
        team,
        invite(
            team.state,
            lead,
            invitee=identity(401).did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        ),
        NotAuthorized,
    )


def test_seats_budget_and_price_ceiling_are_enforced() -> None:
    team = form_team(
        1, roles=(RoleSpec(name="worker", count=1, max_price=100),), budget=120, with_key=False
    )
    extra = identity(500)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=extra.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    refused(
        team,
        accept(invitation, extra, price=101, currency="CRL", now_ms=team.tick()),
        PriceAboveRoleMax,
    )
    refused(
        team,
        accept(invitation, extra, price=1, currency="EUR", now_ms=team.now),
        InvalidTeamDocument,
    )
    acceptance = team.add(accept(invitation, extra, price=100, currency="CRL", now_ms=team.now))
    refused(team, certify(team.state, acceptance, team.initiator, now_ms=team.tick()), RoleFull)


def test_budget_caps_total_agreed_prices() -> None:
    team = form_team(1, roles=(RoleSpec(name="worker", count=3),), budget=80, with_key=False)
    extra = identity(510)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=extra.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    acceptance = team.add(accept(invitation, extra, price=40, currency="CRL", now_ms=team.tick()))
    refused(team, certify(team.state, acceptance, team.initiator, now_ms=team.tick()), OverBudget)


def test_an_invitation_is_answered_and_certified_once(team: Team) -> None:
    invitation, acceptance = team.documents[0:2]
    refused(team, acceptance, AlreadyAnswered)
    assert isinstance(acceptance, Acceptance)
    again = certify(team.state, acceptance, team.initiator, now_ms=team.tick())
    refused(team, again, InvitationReplayed)
    refused(team, refuse(invitation, team.members[0], now_ms=team.now), AlreadyAnswered)  # type: ignore[arg-type]
    # Inviting a current member again is pointless and refused.
    refused(
        team,
        invite(
            team.state,
            team.initiator,
            invitee=team.members[0].did,
            role="worker",
            now_ms=team.now,
            ttl_ms=MINUTE,
        ),
        AlreadyMember,
    )


def test_refusal_spends_the_invitation() -> None:
    team = form_team(0, with_key=False)
    invitee = identity(520)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    team.add(refuse(invitation, invitee, now_ms=team.tick(), reason="busy"))
    refused(
        team, accept(invitation, invitee, price=1, currency="CRL", now_ms=team.now), AlreadyAnswered
    )


def test_stale_certificate_epoch_and_deadline_and_future_dates_are_refused(team: Team) -> None:
    invitee = identity(530)
    invitation = team.add(
        invite(
            team.state,
            team.initiator,
            invitee=invitee.did,
            role="worker",
            now_ms=team.tick(),
            ttl_ms=MINUTE,
        )
    )
    acceptance = team.add(accept(invitation, invitee, price=1, currency="CRL", now_ms=team.tick()))
    stale = certify(team.state, acceptance, team.initiator, now_ms=team.tick())
    stale = stale.model_copy(update={"epoch": 0, "signature": None}).signed_by(team.initiator)
    refused(team, stale, StaleKeyEpoch)
    future = certify(team.state, acceptance, team.initiator, now_ms=team.now + 3_600_000 * 24)
    refused(team, future, (FromFuture, TeamExpired))  # type: ignore[arg-type]
    with pytest.raises(TeamExpired):
        team.state.authorize_post(team.initiator.did, 1, DEADLINE)
    assert team.state.current_members(DEADLINE) == {}


def test_errors_keep_their_adapter_categories() -> None:
    assert issubclass(NotAuthorized, Forbidden)
    assert issubclass(InvitationExpired, Expired)
    assert NotAuthorized().category == "forbidden"
    assert StaleKeyEpoch().category == "conflict"


def test_live_documents_after_the_deadline_are_refused_even_when_backdated(team: Team) -> None:
    backdated = invite(
        team.state,
        team.initiator,
        invitee=identity(540).did,
        role="worker",
        now_ms=team.now,
        ttl_ms=MINUTE,
    )
    team.now = DEADLINE + 1
    refused(team, backdated, TeamExpired)
    # Offline, the same document dated before the deadline still verifies as history.
    team.state.apply(backdated, team.now, live=False)
