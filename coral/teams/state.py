"""The team state machine: apply signed documents one by one, or refuse them.

``TeamState`` holds no I/O and no clock: every call takes ``now_ms``. Each
``apply`` checks everything first and only then changes the state, so a
refused document (typed error) leaves the state exactly as it was.

Rules worth knowing:
- Authority: the initiator, or a current member whose role the charter lists
  in ``empowered_roles``, may invite, certify, remove and rekey. Only the
  initiator removes an empowered member, and only the initiator dissolves.
- Key epochs are linear: epoch n+1 must name the hash of epoch n and be
  sealed to exactly the current members. Of two epochs built concurrently on
  the same parent the second is refused (StaleKeyEpoch); its issuer rebuilds
  on the new head, so concurrent removals converge with both members gone.
- After a removal nobody posts until the next key epoch (RekeyRequired).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coral.protocol.agent import verify_record
from coral.protocol.errors import FromFuture, SignatureError
from coral.protocol.limits import DEFAULT_LIMITS
from coral.teams.documents import (
    INITIATOR_ROLE,
    Acceptance,
    Dissolution,
    Invitation,
    KeyEpoch,
    MembershipCertificate,
    Refusal,
    Removal,
    SignedTeamDocument,
    TeamCharter,
)
from coral.teams.errors import (
    AlreadyAnswered,
    AlreadyMember,
    InvalidTeamDocument,
    InvitationExpired,
    InvitationReplayed,
    KeyRecipientsMismatch,
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


@dataclass(frozen=True, slots=True)
class Member:
    """A current member: role, agreed price and the certificate that proves it."""

    did: str
    role: str
    price: int
    certificate_hash: str
    joined_epoch: int


class TeamState:
    """The verified state of one team, built from its charter and later documents."""

    def __init__(
        self, charter: TeamCharter, now_ms: int, *, max_skew_ms: int | None = None
    ) -> None:
        self._max_skew_ms = (
            DEFAULT_LIMITS.max_future_skew_ms if max_skew_ms is None else max_skew_ms
        )
        charter.verify_signature()
        if charter.issued_at > now_ms + self._max_skew_ms:
            raise FromFuture("charter is dated in the future")
        self.charter = charter
        self.charter_hash = charter.content_hash()
        self.invitations: dict[str, Invitation] = {}
        self._invitation_ids: set[str] = set()
        self.answers: dict[str, Acceptance | Refusal] = {}
        self.acceptances: dict[str, Acceptance] = {}
        self._certified_invitations: set[str] = set()
        self.members: dict[str, Member] = {}
        self.key_epoch = 0
        self.key_head_hash = self.charter_hash
        self.key_recipients: frozenset[str] = frozenset()
        self.rekey_required = False
        self.dissolution: Dissolution | None = None
        self.applied_count = 0

    # ----------------------------------------------------------------- queries

    @property
    def team_id(self) -> str:
        """The team's id, from its charter."""
        return self.charter.team_id

    @property
    def initiator(self) -> str:
        """The did that signed the charter."""
        return self.charter.initiator

    def member_dids(self) -> frozenset[str]:
        """Initiator plus every certified, unremoved member: whom a key epoch seals to."""
        return frozenset(self.members) | {self.initiator}

    def is_open(self, now_ms: int) -> bool:
        """True while the team is neither dissolved nor past its deadline."""
        return self.dissolution is None and now_ms < self.charter.deadline_ms

    def current_members(self, now_ms: int) -> dict[str, Member]:
        """Initiator and members as of ``now_ms``; empty once dissolved or expired."""
        if not self.is_open(now_ms):
            return {}
        initiator = Member(self.initiator, INITIATOR_ROLE, 0, self.charter_hash, 0)
        return {self.initiator: initiator, **self.members}

    def has_authority(self, did: str) -> bool:
        """May ``did`` invite, certify, remove and rekey right now?"""
        if did == self.initiator:
            return True
        member = self.members.get(did)
        return member is not None and member.role in self.charter.empowered_roles

    def committed_spend(self) -> int:
        """Sum of the agreed prices of current members."""
        return sum(member.price for member in self.members.values())

    def role_seats_taken(self, role: str) -> int:
        """How many current members hold ``role``."""
        return sum(1 for member in self.members.values() if member.role == role)

    def authorize_post(self, sender: str, epoch: int, now_ms: int) -> None:
        """Raise unless ``sender`` may post a team message under key ``epoch`` now."""
        self._check_open(now_ms)
        if sender not in self.member_dids():
            raise NotAMember(f"{sender} is not a member of team {self.team_id}")
        if self.rekey_required:
            raise RekeyRequired("a member was removed; wait for the next key epoch")
        if epoch != self.key_epoch:
            raise StaleKeyEpoch(f"current key epoch is {self.key_epoch}, not {epoch}")
        if sender not in self.key_recipients:
            raise NotAMember(f"{sender} holds no key for epoch {epoch}")

    def snapshot(self) -> dict[str, Any]:
        """A plain, comparable picture of the state (tests compare before/after)."""
        return {
            "members": dict(self.members),
            "invitations": sorted(self.invitations),
            "answers": sorted(self.answers),
            "certified": sorted(self._certified_invitations),
            "key": (self.key_epoch, self.key_head_hash, sorted(self.key_recipients)),
            "rekey_required": self.rekey_required,
            "dissolved": self.dissolution is not None,
            "applied": self.applied_count,
        }

    # ----------------------------------------------------------------- apply

    def apply(self, document: SignedTeamDocument, now_ms: int, *, live: bool = False) -> None:
        """Verify ``document`` against the state and apply it, or raise and change nothing.

        ``live=True`` adds the checks only the moment of arrival can make
        (an acceptance must arrive before its invitation expires); offline
        re-verification of an old record leaves it False.
        Live, nothing is accepted once the deadline has passed.
        """
        if live:
            self._check_open(now_ms)
        self._check_common(document, now_ms)
        if isinstance(document, Invitation):
            self._apply_invitation(document)
        elif isinstance(document, Acceptance):
            self._apply_acceptance(document, now_ms, live)
        elif isinstance(document, Refusal):
            self._apply_refusal(document)
        elif isinstance(document, MembershipCertificate):
            self._apply_certificate(document)
        elif isinstance(document, Removal):
            self._apply_removal(document)
        elif isinstance(document, KeyEpoch):
            self._apply_key_epoch(document)
        elif isinstance(document, Dissolution):
            self._apply_dissolution(document)
        else:
            raise InvalidTeamDocument(f"{type(document).__name__} cannot be applied to a team")
        self.applied_count += 1

    def _check_open(self, now_ms: int) -> None:
        if self.dissolution is not None:
            raise TeamDissolved(f"team {self.team_id} is dissolved")
        if now_ms >= self.charter.deadline_ms:
            raise TeamExpired(f"team {self.team_id} passed its deadline")

    def _check_common(self, document: SignedTeamDocument, now_ms: int) -> None:
        if self.dissolution is not None:
            raise TeamDissolved(f"team {self.team_id} is dissolved")
        document.verify_signature()
        if document.team_id != self.team_id:
            raise WrongTeam(f"document of team {document.team_id}, not {self.team_id}")
        if document.issued_at > now_ms + self._max_skew_ms:
            raise FromFuture("team document is dated in the future")
        if document.issued_at < self.charter.issued_at:
            raise InvalidTeamDocument("team document predates its charter")
        if document.issued_at >= self.charter.deadline_ms:
            raise TeamExpired(f"team {self.team_id} passed its deadline")

    def _require_authority(self, did: str, action: str) -> None:
        if not self.has_authority(did):
            raise NotAuthorized(f"{did} may not {action} in team {self.team_id}")

    def _require_charter(self, charter_hash: str) -> None:
        if charter_hash != self.charter_hash:
            raise WrongTeam("document refers to another charter")

    def _apply_invitation(self, invitation: Invitation) -> None:
        self._require_authority(invitation.issuer, "invite")
        self._require_charter(invitation.charter_hash)
        if self.charter.role(invitation.role) is None:
            raise InvalidTeamDocument(f"charter has no role {invitation.role!r}")
        if invitation.invitation_id in self._invitation_ids:
            raise InvitationReplayed(f"invitation {invitation.invitation_id} was already issued")
        if not invitation.issued_at < invitation.expires_at <= self.charter.deadline_ms:
            raise InvalidTeamDocument("invitation must expire after issue and by the deadline")
        if invitation.invitee in self.member_dids():
            raise AlreadyMember(f"{invitation.invitee} is already a member")
        self.invitations[invitation.content_hash()] = invitation
        self._invitation_ids.add(invitation.invitation_id)

    def _answered_invitation(self, answer: Acceptance | Refusal) -> Invitation:
        invitation = self.invitations.get(answer.invitation_hash)
        if invitation is None:
            raise UnknownReference("no such invitation in this team")
        if answer.invitee != invitation.invitee:
            raise NotTheInvitee(f"invitation was addressed to {invitation.invitee}")
        if answer.invitation_hash in self.answers:
            raise AlreadyAnswered("invitation was already answered")
        if answer.issued_at < invitation.issued_at:
            raise InvalidTeamDocument("answer predates its invitation")
        if answer.issued_at > invitation.expires_at:
            raise InvitationExpired("invitation had expired when it was answered")
        return invitation

    def _apply_acceptance(self, acceptance: Acceptance, now_ms: int, live: bool) -> None:
        invitation = self._answered_invitation(acceptance)
        if live and now_ms > invitation.expires_at:
            raise InvitationExpired("invitation has expired")
        if acceptance.price.currency != self.charter.budget.currency:
            raise InvalidTeamDocument("price currency differs from the budget currency")
        role = self.charter.role(invitation.role)
        if (
            role is not None
            and role.max_price is not None
            and (acceptance.price.amount > role.max_price)
        ):
            raise PriceAboveRoleMax(f"price above {role.name}'s maximum {role.max_price}")
        self.answers[acceptance.invitation_hash] = acceptance
        self.acceptances[acceptance.content_hash()] = acceptance

    def _apply_refusal(self, refusal: Refusal) -> None:
        self._answered_invitation(refusal)
        self.answers[refusal.invitation_hash] = refusal

    def _apply_certificate(self, certificate: MembershipCertificate) -> None:
        self._require_authority(certificate.issuer, "certify members")
        self._require_charter(certificate.charter_hash)
        acceptance = self.acceptances.get(certificate.acceptance_hash)
        if acceptance is None:
            raise UnknownReference("certificate refers to no acceptance of this team")
        invitation = self.invitations[acceptance.invitation_hash]
        if certificate.member != acceptance.invitee or certificate.role != invitation.role:
            raise InvalidTeamDocument("certificate differs from the accepted invitation")
        if acceptance.invitation_hash in self._certified_invitations:
            raise InvitationReplayed("this invitation already produced a certificate")
        if certificate.member in self.member_dids():
            raise AlreadyMember(f"{certificate.member} is already a member")
        if certificate.expires_at != self.charter.deadline_ms:
            raise InvalidTeamDocument("a certificate expires at the charter deadline")
        if certificate.epoch != self.key_epoch:
            raise StaleKeyEpoch(
                f"certificate names epoch {certificate.epoch}, not {self.key_epoch}"
            )
        if certificate.issued_at < acceptance.issued_at:
            raise InvalidTeamDocument("certificate predates the acceptance")
        role = self.charter.role(certificate.role)
        assert role is not None  # the invitation was checked against the charter
        if self.role_seats_taken(role.name) >= role.count:
            raise RoleFull(f"all {role.count} seats of {role.name} are taken")
        if self.committed_spend() + acceptance.price.amount > self.charter.budget.amount:
            raise OverBudget("accepted prices would exceed the team budget")
        if certificate.agent_record is not None:
            _check_agent_record(certificate, role.capabilities)
        self.members[certificate.member] = Member(
            did=certificate.member,
            role=certificate.role,
            price=acceptance.price.amount,
            certificate_hash=certificate.content_hash(),
            joined_epoch=certificate.epoch,
        )
        self._certified_invitations.add(acceptance.invitation_hash)

    def _apply_removal(self, removal: Removal) -> None:
        target = self.members.get(removal.member)
        if removal.member == self.initiator:
            raise NotAuthorized("the initiator cannot be removed; dissolve the team instead")
        if target is None:
            raise NotAMember(f"{removal.member} is not a member")
        leaving = removal.issuer == removal.member
        if not leaving:
            self._require_authority(removal.issuer, "remove members")
            empowered_target = target.role in self.charter.empowered_roles
            if empowered_target and removal.issuer != self.initiator:
                raise NotAuthorized("only the initiator removes an empowered member")
        del self.members[removal.member]
        # Members who joined but never received a key leave nothing to rotate away from.
        if removal.member in self.key_recipients:
            self.rekey_required = True

    def _apply_key_epoch(self, key_epoch: KeyEpoch) -> None:
        self._require_authority(key_epoch.issuer, "rekey")
        if key_epoch.epoch != self.key_epoch + 1 or key_epoch.previous_hash != self.key_head_hash:
            raise StaleKeyEpoch(
                f"key epoch {key_epoch.epoch} does not extend head epoch {self.key_epoch}"
            )
        recipients = key_epoch.recipients()
        if len(set(recipients)) != len(recipients) or set(recipients) != self.member_dids():
            raise KeyRecipientsMismatch("key epoch must be sealed to exactly the current members")
        self.key_epoch = key_epoch.epoch
        self.key_head_hash = key_epoch.content_hash()
        self.key_recipients = frozenset(recipients)
        self.rekey_required = False

    def _apply_dissolution(self, dissolution: Dissolution) -> None:
        if dissolution.issuer != self.initiator:
            raise NotAuthorized("only the initiator dissolves the team")
        self._require_charter(dissolution.charter_hash)
        payees = [payout.member for payout in dissolution.payouts]
        if len(set(payees)) != len(payees):
            raise InvalidTeamDocument("a member appears twice in the payouts")
        if dissolution.outcome == "cancelled" and payees:
            raise InvalidTeamDocument("a cancelled team pays nobody")
        if not set(payees) <= set(self.members):
            raise NotAMember("payouts may only go to current members")
        if sum(p.amount for p in dissolution.payouts) > self.charter.budget.amount:
            raise OverBudget("payouts exceed the team budget")
        self.dissolution = dissolution


def _check_agent_record(certificate: MembershipCertificate, required: tuple[str, ...]) -> None:
    record = certificate.agent_record
    assert record is not None
    try:
        verify_record(record)
    except SignatureError as exc:
        raise SignatureError(f"embedded agent record: {exc.detail}") from None
    if record.agent != certificate.member or record.deleted:
        raise InvalidTeamDocument("embedded agent record is not the member's live record")
    if not set(required) <= set(record.manifest.capabilities):
        raise InvalidTeamDocument("member's manifest lacks capabilities the role requires")
