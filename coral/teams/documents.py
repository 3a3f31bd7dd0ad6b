"""Signed team documents: the charter and every document that changes a team.

Each document is a strict pydantic model signed with ``sign_object`` under its
own domain prefix, so a signature on one kind can never be replayed as
another. A document's hash is SHA-256 over exactly the bytes its signature
covers (domain + RFC 8785 JSON of the body); later documents point at earlier
ones by that hash, which is what chains a team record together.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from coral.protocol.agent import AgentRecord, Capability
from coral.protocol.canonical import canonical_json, parse_json
from coral.protocol.errors import SignatureError
from coral.protocol.identity import Identity, b64u_decode, b64u_encode
from coral.protocol.message import B64u, Did, Id, Millis
from coral.protocol.signing import verify_object
from coral.teams.errors import InvalidTeamDocument

CHARTER_DOMAIN = b"coral/v1/team-charter\x00"
INVITATION_DOMAIN = b"coral/v1/team-invitation\x00"
ACCEPTANCE_DOMAIN = b"coral/v1/team-acceptance\x00"
REFUSAL_DOMAIN = b"coral/v1/team-refusal\x00"
CERTIFICATE_DOMAIN = b"coral/v1/team-certificate\x00"
REMOVAL_DOMAIN = b"coral/v1/team-removal\x00"
DISSOLUTION_DOMAIN = b"coral/v1/team-dissolution\x00"
KEY_EPOCH_DOMAIN = b"coral/v1/team-key-epoch\x00"

#: The pseudo-role of the team's initiator; no charter role may use it.
INITIATOR_ROLE = "initiator"

_STRICT = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # built on first use

TeamId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._~-]+$")]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
RoleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
Currency = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$")]
Amount = Annotated[int, Field(ge=0, le=2**53 - 1)]
ShortText = Annotated[str, Field(max_length=512)]


class RoleSpec(BaseModel):
    """One role a charter wants filled: capabilities, seats and a price ceiling."""

    model_config = _STRICT
    name: RoleName
    capabilities: tuple[Capability, ...] = ()
    count: Annotated[int, Field(ge=1, le=1000)] = 1
    max_price: Amount | None = None


class Money(BaseModel):
    """An amount in integer minor units of one currency (budgets, quotes)."""

    model_config = _STRICT
    amount: Amount
    currency: Currency = "CRL"


class Payout(BaseModel):
    """One member's share paid from the team budget at close."""

    model_config = _STRICT
    member: Did
    amount: Amount


class SealedKey(BaseModel):
    """A team key sealed (X25519 sealed box) to one member."""

    model_config = _STRICT
    member: Did
    sealed: B64u


class SignedTeamDocument(BaseModel):
    """Base of every team document: a body plus its signer's signature."""

    model_config = _STRICT
    domain: ClassVar[bytes]
    team_id: TeamId
    issued_at: Millis
    signature: B64u | None = None

    @property
    def signer(self) -> str:
        """The did whose signature this document must carry."""
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        """The fields the signature covers (everything but the signature)."""
        return self.model_dump(mode="json", exclude={"signature"})

    def content_hash(self) -> str:
        """SHA-256 hex of the signed bytes; later documents refer to this one by it."""
        return hashlib.sha256(self.domain + canonical_json(self.body())).hexdigest()

    def signed_by(self, identity: Identity) -> Self:
        """Return a copy signed by ``identity``, which must be the document's signer."""
        if identity.did != self.signer:
            raise SignatureError(f"{type(self).__name__} must be signed by {self.signer}")
        raw = identity.sign(self.domain + canonical_json(self.body()))
        return self.model_copy(update={"signature": b64u_encode(raw)})

    def verify_signature(self) -> None:
        """Raise SignatureError unless the signer signed exactly this body."""
        if not self.signature:
            raise SignatureError(f"{type(self).__name__} is not signed", reason="missing_signature")
        # One byte string, one encoding: base64 leaves spare low bits in the last
        # character, and a signature that differs only there must not verify.
        if b64u_encode(b64u_decode(self.signature)) != self.signature:
            raise SignatureError("signature is not canonical base64url")
        verify_object(self.domain, self.body(), self.signature, self.signer)


class TeamCharter(SignedTeamDocument):
    """What the team is for: goal, roles, budget and deadline, signed by its initiator."""

    domain: ClassVar[bytes] = CHARTER_DOMAIN
    type: Literal["charter"] = "charter"
    initiator: Did
    goal: Annotated[str, Field(min_length=1, max_length=4096)]
    roles: Annotated[tuple[RoleSpec, ...], Field(min_length=1, max_length=64)]
    budget: Money
    deadline_ms: Millis
    #: Roles whose members may invite, certify, remove and rekey like the initiator.
    empowered_roles: tuple[RoleName, ...] = ()

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        names = [role.name for role in self.roles]
        if len(set(names)) != len(names):
            raise ValueError("role names must be unique")
        if INITIATOR_ROLE in names:
            raise ValueError(f"role name {INITIATOR_ROLE!r} is reserved")
        if not set(self.empowered_roles) <= set(names):
            raise ValueError("empowered_roles must name charter roles")
        if self.deadline_ms <= self.issued_at:
            raise ValueError("deadline_ms must be after issued_at")
        return self

    @property
    def signer(self) -> str:
        return self.initiator

    def role(self, name: str) -> RoleSpec | None:
        """The role called ``name``, or None."""
        return next((role for role in self.roles if role.name == name), None)


class Invitation(SignedTeamDocument):
    """An offer of one role to one agent, valid until ``expires_at``."""

    domain: ClassVar[bytes] = INVITATION_DOMAIN
    type: Literal["invitation"] = "invitation"
    charter_hash: Sha256Hex
    invitation_id: Id
    role: RoleName
    invitee: Did
    issuer: Did
    expires_at: Millis

    @property
    def signer(self) -> str:
        return self.issuer


class Acceptance(SignedTeamDocument):
    """The invitee's yes, with the price it asks, signed by the invitee."""

    domain: ClassVar[bytes] = ACCEPTANCE_DOMAIN
    type: Literal["acceptance"] = "acceptance"
    invitation_hash: Sha256Hex
    invitee: Did
    price: Money

    @property
    def signer(self) -> str:
        return self.invitee


class Refusal(SignedTeamDocument):
    """The invitee's no, signed by the invitee; the invitation is then spent."""

    domain: ClassVar[bytes] = REFUSAL_DOMAIN
    type: Literal["refusal"] = "refusal"
    invitation_hash: Sha256Hex
    invitee: Did
    reason: ShortText = ""

    @property
    def signer(self) -> str:
        return self.invitee


class MembershipCertificate(SignedTeamDocument):
    """Proof of membership: issued by an authorized issuer for one acceptance.

    ``epoch`` is the team key epoch current at issuance; the member first
    reads the epoch after it. ``agent_record`` optionally embeds the member's
    directory registration, countersigned by its home node.
    """

    domain: ClassVar[bytes] = CERTIFICATE_DOMAIN
    type: Literal["certificate"] = "certificate"
    charter_hash: Sha256Hex
    acceptance_hash: Sha256Hex
    member: Did
    role: RoleName
    issuer: Did
    epoch: Annotated[int, Field(ge=0, le=2**53 - 1)]
    expires_at: Millis
    agent_record: AgentRecord | None = None

    @property
    def signer(self) -> str:
        return self.issuer


class Removal(SignedTeamDocument):
    """Ends one membership; signed by an authorized issuer, or by the member leaving."""

    domain: ClassVar[bytes] = REMOVAL_DOMAIN
    type: Literal["removal"] = "removal"
    member: Did
    issuer: Did
    reason: ShortText = ""

    @property
    def signer(self) -> str:
        return self.issuer


class Dissolution(SignedTeamDocument):
    """Closes the team for good, signed by the initiator; pays out when the goal was met."""

    domain: ClassVar[bytes] = DISSOLUTION_DOMAIN
    type: Literal["dissolution"] = "dissolution"
    charter_hash: Sha256Hex
    issuer: Did
    outcome: Literal["goal_met", "cancelled"]
    payouts: tuple[Payout, ...] = ()

    @property
    def signer(self) -> str:
        return self.issuer


class KeyEpoch(SignedTeamDocument):
    """One team key generation, sealed to each current member.

    Epochs form a chain: ``previous_hash`` is the hash of the epoch before
    (the charter hash for epoch 1). ``key_commitment`` is a keyed hash of the
    key, so every member can check it received the same key as the others.
    """

    domain: ClassVar[bytes] = KEY_EPOCH_DOMAIN
    type: Literal["key_epoch"] = "key_epoch"
    epoch: Annotated[int, Field(ge=1, le=2**53 - 1)]
    previous_hash: Sha256Hex
    issuer: Did
    alg: Literal["x25519-sealedbox"] = "x25519-sealedbox"
    key_commitment: B64u
    sealed_keys: Annotated[tuple[SealedKey, ...], Field(min_length=1, max_length=10_000)]

    @property
    def signer(self) -> str:
        return self.issuer

    def recipients(self) -> list[str]:
        """The members this epoch's key is sealed to, in document order."""
        return [sealed.member for sealed in self.sealed_keys]


TeamDocument = Annotated[
    Invitation | Acceptance | Refusal | MembershipCertificate | Removal | Dissolution | KeyEpoch,
    Field(discriminator="type"),
]


class TeamRecord(BaseModel):
    """A whole team as an ordered log: the charter, then every later document."""

    model_config = _STRICT
    charter: TeamCharter
    documents: tuple[TeamDocument, ...] = ()

    def to_json(self) -> bytes:
        """The record as canonical JSON bytes (what stores and wires carry)."""
        return canonical_json(self.model_dump(mode="json"))


def _first_error(exc: ValidationError, what: str) -> InvalidTeamDocument:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or what
    return InvalidTeamDocument(f"{where}: {first['msg']}"[:500])


def parse_team_record(raw: bytes | str | dict[str, Any]) -> TeamRecord:
    """Parse untrusted JSON (bytes, text or an object) as a TeamRecord; typed errors only."""
    obj = raw if isinstance(raw, dict) else parse_json(raw)
    try:
        return TeamRecord.model_validate(obj)
    except ValidationError as exc:
        raise _first_error(exc, "record") from None


def parse_charter(raw: bytes | str | dict[str, Any]) -> TeamCharter:
    """Parse untrusted JSON as a TeamCharter; typed errors only."""
    obj = raw if isinstance(raw, dict) else parse_json(raw)
    try:
        return TeamCharter.model_validate(obj)
    except ValidationError as exc:
        raise _first_error(exc, "charter") from None


@functools.cache
def _document_adapter() -> TypeAdapter[SignedTeamDocument]:
    # Built on first use, not at import: start-up does not parse team documents.
    return TypeAdapter(TeamDocument)


def parse_team_document(raw: bytes | str | dict[str, Any]) -> SignedTeamDocument:
    """Parse untrusted JSON as one non-charter team document (dispatch on ``type``)."""
    obj = raw if isinstance(raw, dict) else parse_json(raw)
    try:
        return _document_adapter().validate_python(obj)
    except ValidationError as exc:
        raise _first_error(exc, "document") from None


def document_json(document: SignedTeamDocument) -> bytes:
    """Canonical JSON of a signed document, as stored and sent."""
    return canonical_json(document.model_dump(mode="json"))
