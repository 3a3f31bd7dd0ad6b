"""Secure team formation: charters, invitations, certificates, team keys, escrow.

The core is sans-I/O. ``documents`` defines the signed documents,
``state.TeamState`` applies them one by one (refusing with typed errors from
``errors``), ``record.verify_team`` re-verifies a whole record offline,
``keys`` seals a per-epoch team key to every member and encrypts team thread
messages (``messages`` wraps them as ordinary signed messages whose single
part is an ``EncryptedPart``), ``matching`` finds candidates in the directory
and ``builders`` issues documents.

Seams to the rest of the node (``lifecycle``):

- ``TeamStore`` persists records (``coral.store.teams_sqlite.SqliteTeamStore``,
  ``coral.store.teams_postgres.PostgresTeamStore``).
- ``TeamEscrow`` is the ledger: ``reserve_budget(team_id, payer_did, amount,
  currency, timeout_ms) -> hold_id`` when the first invitee accepts,
  ``pay_members(team_id, hold_id, shares)`` on a ``goal_met`` dissolution,
  ``release(team_id, hold_id)`` on cancellation or an undissolved deadline.
  Each call must be idempotent per hold id.
- ``TeamLifecycle`` ties both together; callers pass ``now_ms`` explicitly.
"""

from coral.teams.builders import (
    accept,
    agreed_payouts,
    certify,
    dissolve,
    draft_charter,
    invite,
    refuse,
    remove,
)
from coral.teams.documents import (
    Acceptance,
    Dissolution,
    Invitation,
    KeyEpoch,
    MembershipCertificate,
    Money,
    Payout,
    Refusal,
    Removal,
    RoleSpec,
    SealedKey,
    SignedTeamDocument,
    TeamCharter,
    TeamRecord,
    parse_charter,
    parse_team_document,
    parse_team_record,
)
from coral.teams.keys import (
    TeamKey,
    decrypt_team_message,
    encrypt_team_message,
    new_key_epoch,
    open_key_epoch,
)
from coral.teams.lifecycle import EscrowHold, TeamEscrow, TeamLifecycle, TeamStore
from coral.teams.matching import match_candidates
from coral.teams.messages import authorize_team_message, build_team_message, read_team_message
from coral.teams.ports import TeamIndex
from coral.teams.record import verify_team
from coral.teams.service import TeamsService
from coral.teams.state import Member, TeamState

__all__ = [
    "Acceptance",
    "Dissolution",
    "EscrowHold",
    "Invitation",
    "KeyEpoch",
    "Member",
    "MembershipCertificate",
    "Money",
    "Payout",
    "Refusal",
    "Removal",
    "RoleSpec",
    "SealedKey",
    "SignedTeamDocument",
    "TeamCharter",
    "TeamEscrow",
    "TeamIndex",
    "TeamKey",
    "TeamLifecycle",
    "TeamRecord",
    "TeamState",
    "TeamStore",
    "TeamsService",
    "accept",
    "agreed_payouts",
    "authorize_team_message",
    "build_team_message",
    "certify",
    "decrypt_team_message",
    "dissolve",
    "draft_charter",
    "encrypt_team_message",
    "invite",
    "match_candidates",
    "new_key_epoch",
    "open_key_epoch",
    "parse_charter",
    "parse_team_document",
    "parse_team_record",
    "read_team_message",
    "refuse",
    "remove",
    "verify_team",
]
