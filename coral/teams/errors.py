"""Typed refusals of team documents and team messages.

Each subclasses the protocol error that an adapter already maps (forbidden,
conflict, expired, ...), and carries its own stable ``reason``.
"""

from __future__ import annotations

from coral.protocol.errors import (
    Conflict,
    Expired,
    Forbidden,
    InvalidMessage,
    NotFound,
    Replayed,
    SignatureError,
)


class InvalidTeamDocument(InvalidMessage):
    """A team document is malformed or internally inconsistent."""

    reason = "invalid_team_document"


class WrongTeam(Forbidden):
    """The document belongs to another team or another charter."""

    reason = "wrong_team"


class NotAuthorized(Forbidden):
    """The signer holds no authority for this action (not initiator nor empowered)."""

    reason = "not_authorized"


class NotAMember(Forbidden):
    """The agent is not a current member of the team (or of this key epoch)."""

    reason = "not_a_member"


class NotTheInvitee(Forbidden):
    """An answer to an invitation was signed by someone it was not addressed to."""

    reason = "not_the_invitee"


class PriceAboveRoleMax(Forbidden):
    """A price quote exceeds the role's maximum price."""

    reason = "price_above_role_max"


class UnknownReference(NotFound):
    """A document refers to an invitation or acceptance this team never saw."""

    reason = "unknown_reference"


class InvitationExpired(Expired):
    """An acceptance came after its invitation expired."""

    reason = "invitation_expired"


class TeamExpired(Expired):
    """The charter deadline has passed; the team no longer changes."""

    reason = "team_expired"


class InvitationReplayed(Replayed):
    """An invitation id (or an invitation's certificate) was used twice."""

    reason = "invitation_replayed"


class TeamDissolved(Conflict):
    """The team was dissolved; nothing may be added to it."""

    reason = "team_dissolved"


class AlreadyAnswered(Conflict):
    """The invitation was already accepted or refused."""

    reason = "already_answered"


class AlreadyMember(Conflict):
    """The agent already holds a live certificate in this team."""

    reason = "already_member"


class RoleFull(Conflict):
    """Every seat of the role is taken."""

    reason = "role_full"


class OverBudget(Conflict):
    """Accepted prices (or payouts) would exceed the charter budget."""

    reason = "over_budget"


class StaleKeyEpoch(Conflict):
    """A key epoch or message does not build on the current key epoch head."""

    reason = "stale_key_epoch"


class KeyRecipientsMismatch(Conflict):
    """A key epoch is not sealed to exactly the current members."""

    reason = "key_recipients_mismatch"


class RekeyRequired(Conflict):
    """A member was removed; nobody posts until a new key epoch exists."""

    reason = "rekey_required"


class DecryptionFailed(SignatureError):
    """Ciphertext (or a sealed key) does not open: wrong key, tampered, or misbound."""

    reason = "decryption_failed"
