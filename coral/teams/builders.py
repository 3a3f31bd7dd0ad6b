"""Issue signed team documents from a team's current state.

These only build and sign; nothing is accepted until ``TeamState.apply``
(or ``TeamLifecycle.submit``) says so.
"""

from __future__ import annotations

from coral.protocol.agent import AgentRecord
from coral.protocol.identity import Identity
from coral.protocol.message import new_message_id
from coral.teams.documents import (
    Acceptance,
    Dissolution,
    Invitation,
    MembershipCertificate,
    Money,
    Payout,
    Refusal,
    Removal,
    RoleSpec,
    TeamCharter,
)
from coral.teams.errors import UnknownReference
from coral.teams.state import TeamState


def draft_charter(
    initiator: Identity,
    *,
    goal: str,
    roles: tuple[RoleSpec, ...],
    budget: Money,
    deadline_ms: int,
    now_ms: int,
    empowered_roles: tuple[str, ...] = (),
    team_id: str | None = None,
) -> TeamCharter:
    """A charter signed by ``initiator``; the team id is fresh unless given."""
    return TeamCharter(
        team_id=team_id or "team-" + new_message_id(now_ms),
        issued_at=now_ms,
        initiator=initiator.did,
        goal=goal,
        roles=roles,
        budget=budget,
        deadline_ms=deadline_ms,
        empowered_roles=empowered_roles,
    ).signed_by(initiator)


def invite(
    state: TeamState,
    issuer: Identity,
    *,
    invitee: str,
    role: str,
    now_ms: int,
    ttl_ms: int,
    invitation_id: str | None = None,
) -> Invitation:
    """An invitation to ``role`` for ``invitee``, valid ``ttl_ms`` (capped at the deadline)."""
    return Invitation(
        team_id=state.team_id,
        issued_at=now_ms,
        charter_hash=state.charter_hash,
        invitation_id=invitation_id or new_message_id(now_ms),
        role=role,
        invitee=invitee,
        issuer=issuer.did,
        expires_at=min(now_ms + ttl_ms, state.charter.deadline_ms),
    ).signed_by(issuer)


def accept(
    invitation: Invitation, invitee: Identity, *, price: int, currency: str, now_ms: int
) -> Acceptance:
    """The invitee's signed acceptance of ``invitation`` at ``price``."""
    return Acceptance(
        team_id=invitation.team_id,
        issued_at=now_ms,
        invitation_hash=invitation.content_hash(),
        invitee=invitee.did,
        price=Money(amount=price, currency=currency),
    ).signed_by(invitee)


def refuse(invitation: Invitation, invitee: Identity, *, now_ms: int, reason: str = "") -> Refusal:
    """The invitee's signed refusal of ``invitation``."""
    return Refusal(
        team_id=invitation.team_id,
        issued_at=now_ms,
        invitation_hash=invitation.content_hash(),
        invitee=invitee.did,
        reason=reason,
    ).signed_by(invitee)


def certify(
    state: TeamState,
    acceptance: Acceptance,
    issuer: Identity,
    *,
    now_ms: int,
    agent_record: AgentRecord | None = None,
) -> MembershipCertificate:
    """A membership certificate for an acceptance the state already holds."""
    invitation = state.invitations.get(acceptance.invitation_hash)
    if invitation is None:
        raise UnknownReference("acceptance answers no invitation of this team")
    return MembershipCertificate(
        team_id=state.team_id,
        issued_at=now_ms,
        charter_hash=state.charter_hash,
        acceptance_hash=acceptance.content_hash(),
        member=acceptance.invitee,
        role=invitation.role,
        issuer=issuer.did,
        epoch=state.key_epoch,
        expires_at=state.charter.deadline_ms,
        agent_record=agent_record,
    ).signed_by(issuer)


def remove(
    state: TeamState, member: str, issuer: Identity, *, now_ms: int, reason: str = ""
) -> Removal:
    """A removal of ``member`` (signed by ``member`` itself, it means leaving)."""
    return Removal(
        team_id=state.team_id, issued_at=now_ms, member=member, issuer=issuer.did, reason=reason
    ).signed_by(issuer)


def agreed_payouts(state: TeamState) -> tuple[Payout, ...]:
    """Each current member's agreed price: the default shares when the goal is met."""
    return tuple(
        Payout(member=member.did, amount=member.price)
        for member in sorted(state.members.values(), key=lambda m: m.did)
        if member.price > 0
    )


def dissolve(
    state: TeamState,
    initiator: Identity,
    *,
    now_ms: int,
    goal_met: bool,
    payouts: tuple[Payout, ...] | None = None,
) -> Dissolution:
    """The initiator's dissolution; when the goal was met, payouts default to agreed prices."""
    if goal_met:
        shares = agreed_payouts(state) if payouts is None else payouts
    else:
        shares = ()
    return Dissolution(
        team_id=state.team_id,
        issued_at=now_ms,
        charter_hash=state.charter_hash,
        issuer=initiator.did,
        outcome="goal_met" if goal_met else "cancelled",
        payouts=shares,
    ).signed_by(initiator)
